//! Secrets that never come from `KvSession::rng`, and handles that stay
//! what the owner's listing shows.

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use rocket::local::asynchronous::Client;
use rocket::{get, post, routes, State};
use rocket_kvsession::conformance::app::figment;
use rocket_kvsession::{Error, KvSession, MemoryStore, Session, SessionManager};

#[post("/login/<user>")]
async fn login(session: Session<'_>, user: &str) -> Result<String, Error> {
    session.regenerate().await?;
    session.set_owner(user);
    Ok(format!(
        "{} {}",
        session.id().unwrap_or_default(),
        session.handle().unwrap_or_default()
    ))
}

/// Clears the session, then gives it the same owner again.
#[post("/clear-and-own/<user>")]
fn clear_and_own(session: Session<'_>, user: &str) -> String {
    session.clear();
    session.set_owner(user);
    session.handle().unwrap_or_default()
}

#[get("/handles/<user>")]
async fn handles(manager: &State<SessionManager>, user: &str) -> Result<String, Error> {
    let infos = manager.sessions_of(user).await?;
    Ok(infos
        .into_iter()
        .map(|info| info.handle)
        .collect::<Vec<_>>()
        .join(","))
}

async fn app(seed: Option<u64>) -> Client {
    let mut fairing = KvSession::new(MemoryStore::new());
    if let Some(seed) = seed {
        fairing = fairing.rng(ChaCha20Rng::seed_from_u64(seed));
    }
    let rocket = rocket::custom(figment())
        .attach(fairing)
        .mount("/", routes![login, clear_and_own, handles]);
    Client::tracked(rocket).await.expect("launch")
}

#[rocket::async_test]
async fn a_seeded_rng_repeats_ids_but_never_nonces_or_handles() {
    // Two "restarts" of one app with the same seeded generator.
    let mut seen = Vec::new();
    for _ in 0..2 {
        let client = app(Some(7)).await;
        let res = client.post("/login/alice").dispatch().await;
        let cookie = res
            .headers()
            .get("Set-Cookie")
            .find(|c| c.starts_with("session="))
            .expect("a session cookie")
            .to_owned();
        let body = res.into_string().await.unwrap();
        let (id, handle) = body.split_once(' ').unwrap();
        seen.push((id.to_owned(), handle.to_owned(), cookie));
    }
    // The ids' random parts come from the seeded generator: the same in
    // both (the part after `_` is the creation second, which may differ).
    let random = |id: &str| id.split_once('_').map(|(r, _)| r.to_owned());
    assert!(random(&seen[0].0).is_some(), "an id: {}", seen[0].0);
    assert_eq!(random(&seen[0].0), random(&seen[1].0));
    // Nonces (hence sealed cookies) and handles do not.
    assert_ne!(seen[0].2, seen[1].2);
    assert_ne!(seen[0].1, seen[1].1);
}

#[rocket::async_test]
async fn clear_then_the_same_owner_keeps_the_listed_handle() {
    let client = app(None).await;
    let body = client
        .post("/login/alice")
        .dispatch()
        .await
        .into_string()
        .await
        .unwrap();
    let (_, handle) = body.split_once(' ').unwrap();
    let after = client
        .post("/clear-and-own/alice")
        .dispatch()
        .await
        .into_string()
        .await
        .unwrap();
    assert_eq!(after, handle);
    let listed = client
        .get("/handles/alice")
        .dispatch()
        .await
        .into_string()
        .await
        .unwrap();
    assert_eq!(listed, after);
}
