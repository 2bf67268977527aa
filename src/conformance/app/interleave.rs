//! Seeded interleavings of concurrent requests on two app instances that
//! share one store, checked against the guarantees.
