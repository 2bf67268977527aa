//! mongodb store for rocket_kvsession.
