//! The route table on its own; the endpoints end to end are in client_tests.rs.

use super::*;

#[test]
fn each_endpoint_has_its_path_and_the_query_does_not_count() {
    assert!(matches!(endpoint("POST", "/machine/register"), Ok(Endpoint::Register)));
    assert!(matches!(endpoint("POST", "/machine/map?v=130"), Ok(Endpoint::Map)));
}

#[test]
fn the_path_decides_before_the_method() {
    match endpoint("GET", "/machine/set-dns?x=1") {
        Err(ControlError::NotFound(text)) => assert_eq!(text, "no handler for /machine/set-dns"),
        other => panic!("want a 404, got {:?}", other.err()),
    }
    match endpoint("GET", "/machine/map") {
        Err(ControlError::BadRequest(text)) => assert_eq!(text, "GET not allowed"),
        other => panic!("want a 400, got {:?}", other.err()),
    }
}
