//! A login flow on the embedded `MemoryStore`:
//! `cargo run --example login`, then open <http://127.0.0.1:8000>.
//!
//! `GET /` shows who is logged in (or the login form), `POST /login` checks
//! the user name and the password, regenerates the session id, makes the
//! user the session's owner, labels the session with the browser's name and
//! stores the user, `POST /logout` destroys the session. Each of them leaves
//! a flash message (welcome, wrong password, logged out) that the next page
//! shows once. `GET /sessions` lists the user's sessions (every browser
//! logged in as that user, by label, the current one marked "this
//! browser"), with a button to end each one and one to end all the others
//! ("log out everywhere else").
//!
//! Every form carries a hidden `csrf_token` field from
//! `session.csrf_token()`, and every POST is received with `CsrfForm<T>`:
//! a POST from another site (`Sec-Fetch-Site: cross-site`, a foreign
//! `Origin`) or without a valid token of the session gets `403 Forbidden`
//! and changes nothing, so another site can neither log the user out nor
//! log the browser in as someone else. The login form's page stores the
//! session that holds its CSRF secret, and `POST /login` also refuses a
//! request that arrives without a stored session (a browser that sends
//! neither header, posting from another site without the cookie).
//!
//! Every page is sent with `Cache-Control: no-store`: after a logout, the
//! Back button shows no logged-in page from the browser's cache, and a
//! login form never comes back with the CSRF token of an ended session.
//!
//! The login form has a "remember me" box: without it, the session lasts 12
//! hours and its cookie ends with the browser; with it, the configured
//! `lifetime` (31 days by default) and a permanent cookie. Every session
//! lifecycle event (created, rotated, destroyed, revoked, expired) is logged
//! at info level, with the session's owner and handle, never its id.
//!
//! `examples/api.rs` is the same login for API clients: JSON, and the
//! session in a token header instead of a cookie.

use std::convert::Infallible;
use std::time::{Duration, SystemTime};

use rocket::form::{self, DataField, FromForm, Options, ValueField};
use rocket::http::Status;
use rocket::request::{self, FromRequest, Request};
use rocket::response::{self, content::RawHtml, status, Redirect, Responder, Response};
use rocket::{catch, catchers, get, launch, post, routes, uri, Build, Rocket, State};
use rocket_kvsession::{
    CsrfForm, Error, KvSession, MemoryStore, Session, SessionEvent, SessionInfo, SessionManager,
};

/// The demo's one password.
pub(crate) const PASSWORD: &str = "rocket";

/// The longest user name, in characters.
pub(crate) const MAX_USER_LEN: usize = 64;

/// How long a session lasts without "remember me".
const SHORT_SESSION: Duration = Duration::from_secs(12 * 3600);

/// The stylesheet of every page.
const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:40rem;margin:2rem auto;\
padding:0 1rem;line-height:1.5}\
.flash{padding:.5rem .75rem;border-radius:.25rem;border:1px solid}\
.flash.success{background:#e6f4ea;border-color:#1e7e34;color:#14532d}\
.flash.error{background:#fdecea;border-color:#c62828;color:#7f1d1d}\
.flash.info{background:#e8f0fe;border-color:#1a56db;color:#1e3a8a}\
label{display:block;margin:.5rem 0}\
label.check{display:inline}\
table{border-collapse:collapse;width:100%}\
th,td{text-align:left;padding:.25rem .5rem;border-bottom:1px solid #ddd}\
tr.current{background:#f5f5f5}\
form.inline{display:inline}";

/// An HTML page sent with `Cache-Control: no-store`: every page of this app
/// belongs to one session.
pub(crate) struct Page(String);

impl Page {
    /// A whole document: `title` in the `<title>` and the `<h1>`, then
    /// `flashes` and `body`.
    fn new(title: &str, flashes: &[rocket_kvsession::Flash], body: &str) -> Page {
        let title = html_escape(title);
        let flashes: String = flashes
            .iter()
            .map(|flash| {
                format!(
                    "<p class=\"flash {}\" role=\"alert\">{}</p>\n",
                    html_escape(flash.kind()),
                    html_escape(flash.message())
                )
            })
            .collect();
        Page(format!(
            "<!doctype html>\n\
             <html lang=\"en\">\n\
             <head>\n\
             <meta charset=\"utf-8\">\n\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
             <title>{title}</title>\n\
             <style>{STYLE}</style>\n\
             </head>\n\
             <body>\n\
             <h1>{title}</h1>\n\
             {flashes}{body}\
             </body>\n\
             </html>\n"
        ))
    }
}

impl<'r> Responder<'r, 'static> for Page {
    fn respond_to(self, req: &'r Request<'_>) -> response::Result<'static> {
        Response::build_from(RawHtml(self.0).respond_to(req)?)
            .raw_header("Cache-Control", "no-store")
            .ok()
    }
}

/// The `User-Agent` header, if the request sent one.
pub(crate) struct UserAgent<'r>(Option<&'r str>);

#[rocket::async_trait]
impl<'r> FromRequest<'r> for UserAgent<'r> {
    type Error = Infallible;

    async fn from_request(req: &'r Request<'_>) -> request::Outcome<Self, Infallible> {
        request::Outcome::Success(UserAgent(req.headers().get_one("User-Agent")))
    }
}

/// A short name for the browser of `user_agent` ("Firefox on Linux"), or
/// the header itself when it names no browser this knows.
pub(crate) fn device_name(user_agent: &str) -> String {
    let browser = [
        ("Edg/", "Edge"),
        ("OPR/", "Opera"),
        ("Firefox/", "Firefox"),
        ("HeadlessChrome/", "Headless Chrome"),
        ("Chrome/", "Chrome"),
        ("Chromium/", "Chromium"),
        ("Safari/", "Safari"),
    ]
    .into_iter()
    .find(|(marker, _)| user_agent.contains(marker));
    let system = [
        ("Android", "Android"),
        ("iPhone", "iOS"),
        ("iPad", "iPadOS"),
        ("CrOS", "ChromeOS"),
        ("Windows", "Windows"),
        ("Mac OS X", "macOS"),
        ("Linux", "Linux"),
    ]
    .into_iter()
    .find(|(marker, _)| user_agent.contains(marker));
    match (browser, system) {
        (Some((_, browser)), Some((_, system))) => format!("{browser} on {system}"),
        (Some((_, browser)), None) => browser.to_owned(),
        _ => user_agent.to_owned(),
    }
}

#[derive(FromForm)]
struct Login<'r> {
    user: &'r str,
    password: &'r str,
    remember: bool,
}

/// A form with no fields besides its `csrf_token` (which `CsrfForm` takes):
/// a button that only needs to prove it is the app's own.
struct Confirm;

#[rocket::async_trait]
impl<'r> FromForm<'r> for Confirm {
    type Context = ();

    fn init(_: Options) {}

    fn push_value(_: &mut (), _: ValueField<'r>) {}

    async fn push_data(_: &mut (), _: DataField<'r, '_>) {}

    fn finalize(_: ()) -> form::Result<'r, Self> {
        Ok(Confirm)
    }
}

/// The hidden field that proves a form is the app's own.
fn csrf_field(session: &Session<'_>) -> Result<String, Error> {
    // The token is base64url: nothing in it needs escaping.
    Ok(format!(
        "<input type=\"hidden\" name=\"csrf_token\" value=\"{}\">",
        session.csrf_token()?
    ))
}

#[get("/")]
fn index(session: Session<'_>) -> Result<Page, Error> {
    let flashes = session.flashes();
    let csrf = csrf_field(&session)?;
    Ok(match session.get::<String>("user")? {
        Some(user) => Page::new(
            "Logged in",
            &flashes,
            &format!(
                "<p>Logged in as <b>{}</b>; {} in this session.</p>\n\
                 <p><a href=\"/sessions\">Your sessions</a></p>\n\
                 <form method=\"post\" action=\"/logout\">{csrf}\
                 <button>Log out</button></form>\n",
                html_escape(&user),
                plural(visits(&session)?, "visit", "visits")
            ),
        ),
        // The token stores the session now, so the login that follows
        // arrives with a stored session and is checked against it.
        None => Page::new(
            "Log in",
            &flashes,
            &format!(
                "<p>Not logged in.</p>\n\
                 <form method=\"post\" action=\"/login\">{csrf}\n\
                 <label for=\"user\">User name</label>\n\
                 <input id=\"user\" name=\"user\" autocomplete=\"username\" required \
                 maxlength=\"{MAX_USER_LEN}\">\n\
                 <label for=\"password\">Password (it is “{PASSWORD}”)</label>\n\
                 <input id=\"password\" name=\"password\" type=\"password\" \
                 autocomplete=\"current-password\" required>\n\
                 <p><input id=\"remember\" type=\"checkbox\" name=\"remember\" value=\"true\"> \
                 <label class=\"check\" for=\"remember\">Remember me</label></p>\n\
                 <button>Log in</button>\n\
                 </form>\n"
            ),
        ),
    })
}

fn visits(session: &Session<'_>) -> Result<u64, Error> {
    let visits = session.get::<u64>("visits")?.unwrap_or(0) + 1;
    session.insert("visits", visits)?;
    Ok(visits)
}

/// Why `user` cannot be a user name, if it cannot.
pub(crate) fn user_name_problem(user: &str) -> Option<String> {
    if user.is_empty() {
        Some("Enter a user name.".to_owned())
    } else if user.chars().count() > MAX_USER_LEN {
        Some(format!(
            "A user name has at most {MAX_USER_LEN} characters."
        ))
    } else if user.chars().any(char::is_control) {
        Some("A user name cannot contain control characters.".to_owned())
    } else {
        None
    }
}

#[post("/login", data = "<form>")]
async fn login(
    session: Session<'_>,
    agent: UserAgent<'_>,
    form: CsrfForm<Login<'_>>,
) -> Result<Result<Redirect, status::Custom<Page>>, Error> {
    // `CsrfForm` checked the token against the stored session. Without
    // one (the form's page never stored it here, or a browser posted from
    // another site without the cookie and without the headers that would
    // have told), there is nothing to check it against: change nothing.
    if !session.is_stored() {
        return Ok(Err(status::Custom(Status::Forbidden, refused_page())));
    }
    let user = form.user.trim();
    if let Some(problem) = user_name_problem(user) {
        session.flash("error", problem)?;
        return Ok(Ok(Redirect::to(uri!(index))));
    }
    if form.password != PASSWORD {
        session.flash("error", "Wrong user name or password.")?;
        return Ok(Ok(Redirect::to(uri!(index))));
    }
    // A new id at every privilege change: a session id planted before login
    // is worthless afterwards (and so are CSRF tokens issued before it).
    session.regenerate().await?;
    // The owner lets the user list and end their sessions (/sessions).
    session.set_owner(user);
    // The label tells this browser from the user's others on /sessions.
    session.set_label(&device_name(agent.0.unwrap_or_default()));
    session.insert("user", user)?;
    if !form.remember {
        // Twelve hours, and a cookie that ends with the browser.
        session.set_lifetime(SHORT_SESSION);
        session.set_permanent(false);
    }
    session.flash("success", format!("Welcome, {user}!"))?;
    Ok(Ok(Redirect::to(uri!(index))))
}

#[get("/whoami")]
fn whoami(session: Session<'_>) -> Option<String> {
    session.get::<String>("user").ok().flatten()
}

#[post("/logout", data = "<_form>")]
async fn logout(session: Session<'_>, _form: CsrfForm<Confirm>) -> Result<Redirect, Error> {
    session.destroy().await?;
    // The request goes on with a new session, which carries the message.
    session.flash("success", "You are logged out.")?;
    Ok(Redirect::to(uri!(index)))
}

/// The user's sessions: which browser, when each started, was last used
/// and ends, which one is this browser, a button to end each other one and
/// one to end them all.
#[get("/sessions")]
async fn sessions(
    session: Session<'_>,
    manager: &State<SessionManager>,
) -> Result<Result<Page, Redirect>, Error> {
    let Some(user) = session.owner() else {
        return Ok(Err(Redirect::to(uri!(index))));
    };
    let flashes = session.flashes();
    let csrf = csrf_field(&session)?;
    let current = session.handle();
    let list = manager.sessions_of(&user).await?;
    let rows: String = list
        .iter()
        .map(|info| {
            session_row(
                info,
                current.as_deref() == Some(info.handle.as_str()),
                &csrf,
            )
        })
        .collect();
    let others = list.len().saturating_sub(1);
    let end_others = if others > 0 {
        format!(
            "<form method=\"post\" action=\"/sessions/end-others\">{csrf}\
             <button>Log out everywhere else</button></form>\n"
        )
    } else {
        String::new()
    };
    Ok(Ok(Page::new(
        &format!("Sessions of {user}"),
        &flashes,
        &format!(
            "<p>{} logged in as <b>{}</b>.</p>\n\
             <table>\n\
             <tr><th>browser</th><th>started</th><th>last active</th><th>ends</th><th></th></tr>\n\
             {rows}</table>\n\
             {end_others}\
             <p><a href=\"/\">Back</a></p>\n",
            plural(list.len() as u64, "session", "sessions"),
            html_escape(&user)
        ),
    )))
}

/// One row of the sessions page.
fn session_row(info: &SessionInfo, current: bool, csrf: &str) -> String {
    let label = match &info.label {
        Some(label) => html_escape(label),
        None => "unknown browser".to_owned(),
    };
    let ends = if info.permanent {
        until(info.expires_at)
    } else {
        format!("{} or when the browser closes", until(info.expires_at))
    };
    // Handles are hex: safe in a page, and they open nothing.
    let (class, action) = if current {
        (" class=\"current\"", "<b>this browser</b>".to_owned())
    } else {
        (
            "",
            format!(
                "<form class=\"inline\" method=\"post\" action=\"/sessions/end\">{csrf}\
                 <input type=\"hidden\" name=\"handle\" value=\"{}\">\
                 <button>End</button></form>",
                info.handle
            ),
        )
    };
    format!(
        "<tr{class}><td>{label}</td><td>{}</td><td>{}</td><td>{ends}</td><td>{action}</td></tr>\n",
        ago(info.created),
        ago(info.last_active),
    )
}

#[derive(FromForm)]
struct EndSession<'r> {
    handle: &'r str,
}

/// Ends one of the user's sessions, named by its handle.
#[post("/sessions/end", data = "<form>")]
async fn end_session(
    session: Session<'_>,
    manager: &State<SessionManager>,
    form: CsrfForm<EndSession<'_>>,
) -> Result<Redirect, Error> {
    if let Some(user) = session.owner() {
        // Scoped to the user: another user's handle ends nothing.
        if manager.revoke(&user, form.handle).await? {
            session.flash("success", "That session has ended.")?;
        }
    }
    Ok(Redirect::to(uri!(sessions)))
}

/// Ends every session of the user but this one.
#[post("/sessions/end-others", data = "<_form>")]
async fn end_other_sessions(
    session: Session<'_>,
    _form: CsrfForm<Confirm>,
) -> Result<Redirect, Error> {
    let ended = session.revoke_other_sessions().await?;
    let message = match ended {
        0 => "There were no other sessions.".to_owned(),
        n => format!("Ended {}.", plural(n, "other session", "other sessions")),
    };
    session.flash("success", message)?;
    Ok(Redirect::to(uri!(sessions)))
}

/// The page of a refused POST: from another site, or from a page of a
/// session that has ended.
fn refused_page() -> Page {
    Page::new(
        "Form refused",
        &[],
        "<p>This form came from another site, or from a page that has expired \
         (logging in needs cookies).</p>\n\
         <p><a href=\"/\">Reload the page</a> and try again.</p>\n",
    )
}

#[catch(403)]
fn forbidden() -> Page {
    refused_page()
}

/// "1 visit", "2 visits".
pub(crate) fn plural(n: u64, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

/// "3 minutes" for a number of seconds, rounded to the nearest unit.
fn span(secs: u64) -> String {
    match secs {
        0..=3569 => plural((secs + 30) / 60, "minute", "minutes"),
        3570..=84_599 => plural((secs + 1800) / 3600, "hour", "hours"),
        _ => plural((secs + 43_200) / 86_400, "day", "days"),
    }
}

/// "3 minutes ago".
fn ago(time: SystemTime) -> String {
    match SystemTime::now().duration_since(time) {
        Ok(past) if past.as_secs() >= 60 => format!("{} ago", span(past.as_secs())),
        _ => "just now".to_owned(),
    }
}

/// "in 3 hours".
fn until(time: SystemTime) -> String {
    let secs = time
        .duration_since(SystemTime::now())
        .unwrap_or_default()
        .as_secs();
    format!("in {}", span(secs.max(60)))
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The app, on any store; `main` uses a `MemoryStore`.
pub(crate) fn app(sessions: KvSession) -> Rocket<Build> {
    rocket::build()
        .attach(sessions)
        .mount(
            "/",
            routes![
                index,
                login,
                whoami,
                logout,
                sessions,
                end_session,
                end_other_sessions
            ],
        )
        .register("/", catchers![forbidden])
}

/// An audit log line for each session event (cheap: it only logs).
pub(crate) fn log_event(event: &SessionEvent) {
    log::info!(
        "session {:?}: owner {:?}, handle {:?}",
        event.kind(),
        event.owner(),
        event.handle()
    );
}

#[launch]
pub(crate) fn rocket() -> _ {
    app(KvSession::new(MemoryStore::new()).on_event(log_event))
}
