//! Schemas of the API's own wire values that are not domain types (a Headscale uint64 id in
//! text, …). The domain's names and tags have theirs beside them, in `tenscale-base`
//! (`schema.rs`, the `openapi` feature), since an impl of utoipa's traits must live with the
//! type or the trait.

use std::borrow::Cow;

use utoipa::openapi::schema::{
    AdditionalProperties, ArrayBuilder, ObjectBuilder, OneOfBuilder, Schema, SchemaType, Type,
};
use utoipa::openapi::RefOr;

use crate::domain::TAG_PATTERN;
use utoipa::{PartialSchema, ToSchema};

/// The decimal digits of a Headscale uint64 id ([`super::headscale`] refuses anything else).
pub const UINT64_TEXT_PATTERN: &str = "^[0-9]+$";

/// A Headscale uint64 id in a path or query: decimal text.
pub struct Uint64Text;

impl PartialSchema for Uint64Text {
    fn schema() -> RefOr<Schema> {
        uint64_text().into()
    }
}

impl ToSchema for Uint64Text {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Uint64Text")
    }
}

fn uint64_text() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(UINT64_TEXT_PATTERN))
        .description(Some("A uint64 id as decimal text (protobuf JSON)."))
}

/// A Headscale uint64 id in a body: protobuf JSON takes decimal text or a number.
pub struct Uint64Json;

impl PartialSchema for Uint64Json {
    fn schema() -> RefOr<Schema> {
        let number = ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(0));
        OneOfBuilder::new()
            .item(uint64_text())
            .item(number)
            .description(Some("A uint64 id: decimal text, or a JSON number."))
            .into()
    }
}

impl ToSchema for Uint64Json {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Uint64Json")
    }
}

/// A policy as a JSON object, what `application/json` carries (`application/hujson` carries
/// the same text, with comments and trailing commas allowed). The document describes its
/// shape; what the entries mean is checked on arrival, and a refusal names line and column.
pub struct PolicyObject;

impl PartialSchema for PolicyObject {
    fn schema() -> RefOr<Schema> {
        let text = || ObjectBuilder::new().schema_type(Type::String);
        let texts = || ArrayBuilder::new().items(text());
        let anything = || ObjectBuilder::new().schema_type(SchemaType::AnyValue);
        let map_of =
            |values: RefOr<Schema>| ObjectBuilder::new().schema_type(Type::Object).additional_properties(Some(values));
        // One entry of `acls`, `ssh` or `tests`: these fields, no others.
        let entry = |fields: Vec<(&str, RefOr<Schema>)>, required: &[&str]| {
            let mut entry = ObjectBuilder::new().schema_type(Type::Object).additional_properties(Some(closed()));
            for (field, schema) in fields {
                entry = entry.property(field, schema);
            }
            for field in required {
                entry = entry.required(*field);
            }
            entry
        };
        let acl = entry(
            vec![
                ("action", text().into()),
                ("proto", anything().into()),
                ("src", texts().into()),
                ("dst", texts().into()),
            ],
            &["action", "src", "dst"],
        );
        let ssh = entry(
            vec![
                ("action", text().into()),
                ("src", texts().into()),
                ("dst", texts().into()),
                ("users", texts().into()),
                ("checkPeriod", anything().into()),
            ],
            &["action", "src", "dst", "users"],
        );
        let test = entry(
            vec![
                ("src", text().into()),
                ("proto", anything().into()),
                ("accept", texts().into()),
                ("deny", texts().into()),
            ],
            &["src"],
        );
        // `acls` and `ssh` may be null (as if absent); the others may not.
        let list_or_null = |entry: ObjectBuilder| {
            ArrayBuilder::new().schema_type(SchemaType::from_iter([Type::Array, Type::Null])).items(entry)
        };
        let tag_owners = map_of(texts().into())
            .property_names(Some(ObjectBuilder::new().schema_type(Type::String).pattern(Some(TAG_PATTERN))));
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some(
                "A policy: Tailscale's policy file. `acls` absent or null lets every node of a namespace reach \
                 every other; `[]` denies all.",
            ))
            .property("groups", map_of(texts().into()))
            .property("hosts", map_of(text().into()))
            .property("tagOwners", tag_owners)
            .property("acls", list_or_null(acl))
            .property("ssh", list_or_null(ssh))
            .property("tests", ArrayBuilder::new().items(test))
            .additional_properties(Some(closed()))
            .into()
    }
}

/// `additionalProperties: false`: the policy parser refuses unknown fields.
fn closed() -> AdditionalProperties<Schema> {
    AdditionalProperties::FreeForm(false)
}

impl ToSchema for PolicyObject {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("PolicyObject")
    }
}
