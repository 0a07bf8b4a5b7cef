//! How the domain's checked values appear in the OpenAPI document: a name or a tag is a
//! string with the `pattern` its parser accepts ([`crate::domain::LABEL_PATTERN`],
//! [`crate::domain::TAG_PATTERN`]), so a client that follows the document is never refused
//! for the form of a name, and the fuzzer generates names the server takes.
//!
//! Hand-written because utoipa's `pattern = "…"` attribute takes a literal only, and the
//! pattern must be the domain's own constant, which a unit test holds to the validator.
//! Here (behind the `openapi` feature) because an impl of utoipa's traits must live beside
//! the type or the trait.

use std::borrow::Cow;

use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Schema, Type};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{PartialSchema, ToSchema};

use crate::domain::{NamespaceName, NodeName, Tag, Tags, LABEL_PATTERN, TAG_PATTERN};

fn label(description: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(LABEL_PATTERN))
        .min_length(Some(1))
        .max_length(Some(63))
        .description(Some(description))
        .into()
}

impl PartialSchema for NamespaceName {
    fn schema() -> RefOr<Schema> {
        label("A namespace's name: 1-63 lowercase letters, digits or '-', not starting or ending with '-'.")
    }
}

impl ToSchema for NamespaceName {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("NamespaceName")
    }
}

impl PartialSchema for NodeName {
    fn schema() -> RefOr<Schema> {
        label("A node's name in its namespace: 1-63 lowercase letters, digits or '-', not starting or ending with '-'.")
    }
}

impl ToSchema for NodeName {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("NodeName")
    }
}

impl PartialSchema for Tag {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(TAG_PATTERN))
            .description(Some("An ACL tag: `tag:` followed by 1-63 lowercase letters, digits or '-'."))
            .examples([serde_json::json!("tag:cli")])
            .into()
    }
}

impl ToSchema for Tag {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Tag")
    }
}

impl PartialSchema for Tags {
    fn schema() -> RefOr<Schema> {
        ArrayBuilder::new()
            .items(Ref::from_schema_name(Tag::name()))
            .description(Some("A set of tags; order does not matter and repeats count once."))
            .into()
    }
}

impl ToSchema for Tags {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Tags")
    }

    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((Tag::name().into(), Tag::schema()));
    }
}
