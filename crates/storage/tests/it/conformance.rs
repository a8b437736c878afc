//! The reusable conformance suite, on both backends.

mod sqlite {
    switchboard_storage::store_conformance!(crate::support::TestDb::sqlite);
}

mod postgres {
    switchboard_storage::store_conformance!(crate::support::TestDb::postgres);
}
