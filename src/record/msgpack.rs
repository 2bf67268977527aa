//! MessagePack helpers shared by the record formats: the headers `rmp`
//! writes, written without its generic writer, and the errors of a record
//! that does not decode.

use std::borrow::Cow;

use crate::error::Error;

/// Writes a format 1 data map of `len` entries; every key is UTF-8.
pub(super) fn write_map<'a>(
    out: &mut Vec<u8>,
    len: usize,
    entries: impl Iterator<Item = (&'a [u8], &'a [u8])>,
) -> Result<(), rmp::encode::ValueWriteError> {
    rmp::encode::write_map_len(out, len as u32)?;
    for (key, value) in entries {
        push_str_header(out, key.len() as u32);
        out.extend_from_slice(key);
        push_bin_header(out, value.len() as u32);
        out.extend_from_slice(value);
    }
    Ok(())
}

/// Writes the header `rmp::encode::write_str_len` writes, without its
/// generic writer (a save writes two headers per key).
pub(super) fn push_str_header(out: &mut Vec<u8>, len: u32) {
    match len {
        0..32 => out.push(0xa0 | len as u8),
        32..256 => out.extend_from_slice(&[0xd9, len as u8]),
        256..=0xffff => {
            out.push(0xda);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(0xdb);
            out.extend_from_slice(&len.to_be_bytes());
        }
    }
}

/// Writes the header `rmp::encode::write_bin_len` writes.
pub(super) fn push_bin_header(out: &mut Vec<u8>, len: u32) {
    match len {
        0..256 => out.extend_from_slice(&[0xc4, len as u8]),
        256..=0xffff => {
            out.push(0xc5);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(0xc6);
            out.extend_from_slice(&len.to_be_bytes());
        }
    }
}

/// The size of the headers `rmp` writes for a string, a binary and a map of
/// `len` (the smallest each can be).
pub(super) fn str_header(len: u32) -> usize {
    match len {
        0..32 => 1,
        32..256 => 2,
        256..=0xffff => 3,
        _ => 5,
    }
}

pub(super) fn bin_header(len: u32) -> usize {
    match len {
        0..256 => 2,
        256..=0xffff => 3,
        _ => 5,
    }
}

pub(super) fn map_header(len: u32) -> usize {
    match len {
        0..16 => 1,
        16..=0xffff => 3,
        _ => 5,
    }
}

/// A record that cannot be read.
pub(crate) fn corrupt(reason: impl Into<Cow<'static, str>>) -> Error {
    Error::CorruptRecord {
        reason: reason.into(),
    }
}

/// Splits `len` bytes off the front of `rd`; `context` (the record's kind)
/// and `what` name them in the error.
pub(crate) fn take_in<'a>(
    rd: &mut &'a [u8],
    len: u32,
    context: &'static str,
    what: &'static str,
) -> Result<&'a [u8], Error> {
    let len = len as usize;
    if rd.len() < len {
        return Err(corrupt(format!("{context}: truncated {what}")));
    }
    let (head, tail) = rd.split_at(len);
    *rd = tail;
    Ok(head)
}

/// The error of a field `what` of a `context` record that does not decode.
pub(crate) fn bad_in<E: std::fmt::Display>(
    context: &'static str,
    what: &'static str,
) -> impl FnOnce(E) -> Error {
    move |e| corrupt(format!("{context}: {what}: {e}"))
}
