//! object_store store for rocket_kvsession.
