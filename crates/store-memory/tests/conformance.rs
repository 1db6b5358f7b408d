//! The in-memory store passes the store conformance suite.

use std::sync::Arc;

use antifraud_store_memory::MemoryStore;

antifraud_store_conformance::store_conformance_tests!(async { ((), Arc::new(MemoryStore::new())) });
