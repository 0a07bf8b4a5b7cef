//! The served OpenAPI document against the server (issue 15, item 6): every example in it
//! matches its own schema, and every operation's request example, sent after creating what
//! the operation names (a namespace `alice` with a key, a node and policies, the
//! organization's policy and browser-key settings), is answered with a status the document
//! lists for that operation, a Content-Type it lists for that status, and a body that its
//! schema admits. Each example must also succeed, but for two operations that cannot.

use jsonschema::Validator;
use reqwest::{Method, Response, StatusCode};
use serde_json::{json, Value};

use crate::on_both_backends;
use crate::support::api::{json as json_body, spawn, Backend, TestApp};

on_both_backends!(every_example_is_answered_as_documented);

/// Seals the browser-key settings' HS256 secret, which PostgreSQL deployments need.
const SECRETS_KEY: &str = "5e0c3d1f8a2b4c6d7e9f0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f";

/// A policy that owns every tag the examples use.
const FIXTURE_POLICY: &str = r#"{"tagOwners": {"tag:browser": [], "tag:cli": [], "tag:ci": []}, "acls": [{"action": "accept", "src": ["*"], "dst": ["*:*"]}]}"#;

/// The operations whose example cannot succeed, and what they answer instead.
const EXPECTED_REFUSALS: &[(&str, u16)] = &[
    // Its credential is a JWT from the app backend, which an example cannot hold.
    ("exchangeBrowserKey", 401),
    // Namespaces keep their names; the operation exists for Headscale clients.
    ("HeadscaleService_RenameUser", 501),
];

/// The operations that create the namespace `alice`: their fixture must not have it.
const CREATE_ALICE: &[&str] = &["createNamespace", "HeadscaleService_CreateUser"];

async fn every_example_is_answered_as_documented(backend: Backend) {
    let t = spawn(backend, &[("TENSCALE_SECRETS_KEY", SECRETS_KEY)]).await;
    let doc = json_body(t.client.get(t.url("/openapi.json")).send().await.unwrap(), StatusCode::OK).await;
    let spec = Spec { doc: &doc };
    spec.check_examples_match_their_schemas();

    let mut sent = 0;
    for (index, op) in spec.operations().into_iter().enumerate() {
        let fixture = Fixture::create(&t, index, !CREATE_ALICE.contains(&op.id.as_str())).await;
        for media in op.body_media_types() {
            let response = send(&t, &fixture, &op, media.as_deref()).await;
            let shown = format!("{} {} ({})", op.method, op.path, media.as_deref().unwrap_or("no body"));
            spec.check_response(&op, response, &shown).await;
            sent += 1;
        }
    }
    assert!(sent >= 40, "only {sent} examples sent");
    t.finish().await;
}

/// What the examples refer to, made fresh in an organization of its own for each operation
/// (so a delete or a rename cannot change what the next operation finds).
struct Fixture {
    key: String,
    /// The prefix a listing shows of `key` (the Headscale surface names API keys by it).
    key_prefix: String,
    /// The id of `key` (`/v1/api-keys/{id}`).
    key_id: i64,
    namespace_id: i64,
    preauth_key_id: i64,
    preauth_key_prefix: String,
    node_id: i64,
}

impl Fixture {
    async fn create(t: &TestApp, index: usize, with_alice: bool) -> Fixture {
        let org = t.org(&format!("org-{index}")).await;
        let key = org.key.clone();
        let own = t.app.state.api.store.list_api_keys(org.id).await.unwrap().remove(0);
        let (key_prefix, key_id) = (own.prefix, own.id.get());
        ok(t.put_policy(&key, "application/json", FIXTURE_POLICY).await).await;
        let settings = json!({"issuer": format!("https://org-{index}.example.com"), "audience": "tenscale",
            "keys": [{"alg": "HS256", "secret": "a secret of the fixture, 32 bytes or more"}]});
        ok(t.req(Method::PUT, "/v1/settings/browser-keys", &key).json(&settings).send().await.unwrap()).await;
        if !with_alice {
            let (namespace_id, preauth_key_id, node_id, preauth_key_prefix) = (0, 0, 0, String::new());
            return Fixture { key, key_prefix, key_id, namespace_id, preauth_key_id, preauth_key_prefix, node_id };
        }
        ok(t.post("/v1/namespaces", &key, json!({"name": "alice"})).await).await;
        let policy = t.req(Method::PUT, "/v1/namespaces/alice/policy", &key).header("content-type", "application/json");
        ok(policy.body(FIXTURE_POLICY).send().await.unwrap()).await;
        let created =
            ok(t.post("/v1/namespaces/alice/keys", &key, json!({"reusable": true, "tags": ["tag:ci"]})).await).await;
        let namespace = t.app.state.api.store.namespace_by_name(org.id, "alice").await.unwrap();
        let node = t.register_node(namespace.id, created["key"].as_str().unwrap(), "laptop").await;
        Fixture {
            key,
            key_prefix,
            key_id,
            namespace_id: namespace.id.get(),
            preauth_key_id: created["id"].as_i64().unwrap(),
            preauth_key_prefix: created["prefix"].as_str().unwrap().to_string(),
            node_id: node.id.get(),
        }
    }

    /// The value for path parameter `name` of `path`: the fixture's object of that kind, or
    /// the parameter's example where any value of the right form will do (a new name).
    fn path_value(&self, path: &str, name: &str, example: Option<&Value>) -> String {
        match name {
            "node_id" => self.node_id.to_string(),
            "keyId" => self.preauth_key_id.to_string(),
            "id" if path.contains("/api-keys/") => self.key_id.to_string(),
            "id" if path.contains("/keys/") => self.preauth_key_id.to_string(),
            "id" if path.contains("/nodes/") => self.node_id.to_string(),
            "id" | "old_id" => self.namespace_id.to_string(),
            "prefix" => self.key_prefix.clone(),
            _ => text(example.unwrap_or_else(|| panic!("{path}: parameter {name} has no example"))),
        }
    }

    /// The example body with the ids it names replaced by the fixture's: the Headscale
    /// surface names users by id, pre-auth keys by their text and API keys by their prefix.
    fn body(&self, mut example: Value) -> Value {
        if let Some(fields) = example.as_object_mut() {
            if fields.contains_key("user") {
                fields.insert("user".into(), json!(self.namespace_id.to_string()));
            }
            if fields.get("key").is_some_and(Value::is_string) {
                fields.insert("key".into(), json!(self.preauth_key_prefix));
            }
            if fields.get("prefix").is_some_and(Value::is_string) {
                fields.insert("prefix".into(), json!(self.key_prefix));
            }
        }
        example
    }
}

/// Asserts a 2xx answer and returns its JSON body (`null` when empty).
async fn ok(response: Response) -> Value {
    let status = response.status();
    let url = response.url().clone();
    let text = response.text().await.unwrap_or_default();
    assert!(status.is_success(), "{url}: {status} {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

/// Whether `media` is JSON (HuJSON is not: it is text that may hold comments).
fn is_json(media: &str) -> bool {
    media == "application/json" || media.ends_with("+json")
}

/// A parameter value as it goes into a URL.
fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Sends the operation's example with the body of `media` (none when `None`).
async fn send(t: &TestApp, fixture: &Fixture, op: &Operation, media: Option<&str>) -> Response {
    let mut path = op.path.clone();
    let mut query = Vec::new();
    for param in op.value["parameters"].as_array().into_iter().flatten() {
        let name = param["name"].as_str().unwrap();
        match param["in"].as_str().unwrap() {
            "path" => {
                let value = fixture.path_value(&op.path, name, param.get("example"));
                path = path.replace(&format!("{{{name}}}"), &value);
            }
            "query" if name == "user" && op.path == "/api/v1/preauthkey" => {
                query.push((name.to_string(), fixture.namespace_id.to_string()));
            }
            "query" if name == "key" && op.path == "/api/v1/preauthkey" => {
                query.push((name.to_string(), fixture.preauth_key_prefix.clone()));
            }
            "query" => {
                if let Some(example) = param.get("example") {
                    query.push((name.to_string(), text(example)));
                }
            }
            other => panic!("{path}: a parameter in {other}"),
        }
    }
    let method = Method::from_bytes(op.method.to_uppercase().as_bytes()).unwrap();
    let mut request = t.req(method, &path, &fixture.key).query(&query);
    if let Some(media) = media {
        let example = fixture.body(op.value["requestBody"]["content"][media]["example"].clone());
        // A JSON example goes as JSON, the way a client sends the document's value (so a string
        // example is a JSON string); a text one (HuJSON) as its text.
        let body = match (is_json(media), example) {
            (false, Value::String(text)) => text,
            (_, other) => other.to_string(),
        };
        request = request.header("content-type", media).body(body);
    }
    request.send().await.expect("request")
}

/// One operation of the document.
struct Operation {
    path: String,
    method: String,
    id: String,
    value: Value,
}

impl Operation {
    /// Each media type of the request body, or a single `None` without one.
    fn body_media_types(&self) -> Vec<Option<String>> {
        match self.value["requestBody"]["content"].as_object() {
            Some(content) => content.keys().map(|media| Some(media.clone())).collect(),
            None => vec![None],
        }
    }
}

/// The served document, and schema checks against it.
struct Spec<'a> {
    doc: &'a Value,
}

impl Spec<'_> {
    fn operations(&self) -> Vec<Operation> {
        let mut ops = Vec::new();
        for (path, item) in self.doc["paths"].as_object().unwrap() {
            for (method, value) in item.as_object().unwrap() {
                let id = value["operationId"].as_str().unwrap_or_else(|| panic!("{method} {path}: operationId"));
                ops.push(Operation {
                    path: path.clone(),
                    method: method.clone(),
                    id: id.to_string(),
                    value: value.clone(),
                });
            }
        }
        ops
    }

    /// `value` with a `$ref` (to a response, say) followed, within the document.
    fn resolve<'v>(&'v self, value: &'v Value) -> &'v Value {
        match value.get("$ref").and_then(Value::as_str) {
            Some(pointer) => self.resolve(self.doc.pointer(pointer.trim_start_matches('#')).expect("$ref resolves")),
            None => value,
        }
    }

    /// A validator for `schema`, whose `$ref`s point into the document's components.
    fn validator(&self, schema: &Value) -> Validator {
        let mut root = schema.clone();
        root.as_object_mut().expect("a schema object").insert("components".into(), self.doc["components"].clone());
        jsonschema::draft202012::options().should_validate_formats(true).build(&root).expect("a valid JSON Schema")
    }

    fn assert_valid(&self, schema: &Value, instance: &Value, what: &str) {
        let errors: Vec<String> = self.validator(schema).iter_errors(instance).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{what}: {instance} does not match its schema: {errors:?}");
    }

    /// Every example the document serves: of a component schema, a parameter, a request
    /// body or a response, against the schema it illustrates.
    fn check_examples_match_their_schemas(&self) {
        for (name, schema) in self.doc["components"]["schemas"].as_object().unwrap() {
            if let Some(example) = schema.get("example") {
                self.assert_valid(&json!({"$ref": format!("#/components/schemas/{name}")}), example, name);
            }
        }
        for op in self.operations() {
            let shown = format!("{} {}", op.method, op.path);
            for param in op.value["parameters"].as_array().into_iter().flatten() {
                if let Some(example) = param.get("example") {
                    self.assert_valid(&param["schema"], example, &format!("{shown} parameter {}", param["name"]));
                }
            }
            for (media, content) in op.value["requestBody"]["content"].as_object().into_iter().flatten() {
                self.assert_valid(&content["schema"], &content["example"], &format!("{shown} request {media}"));
            }
            for (status, response) in op.value["responses"].as_object().unwrap() {
                let response = self.resolve(response);
                for (media, content) in response["content"].as_object().into_iter().flatten() {
                    if let Some(example) = content.get("example") {
                        self.assert_valid(&content["schema"], example, &format!("{shown} {status} {media}"));
                    }
                }
            }
        }
    }

    /// The answer's status is documented for `op`, its Content-Type for that status, and its
    /// body matches that schema; and it is a success unless `op` is an expected refusal.
    async fn check_response(&self, op: &Operation, response: Response, shown: &str) {
        let status = response.status();
        let media = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().split(';').next().unwrap().trim().to_string());
        let body = response.text().await.unwrap();
        let documented = op.value["responses"]
            .get(status.as_str())
            .unwrap_or_else(|| panic!("{shown}: {status} is not documented; body {body}"));
        let expected = EXPECTED_REFUSALS.iter().find(|(id, _)| *id == op.id).map(|(_, status)| *status);
        match expected {
            Some(refusal) => assert_eq!(status.as_u16(), refusal, "{shown}: {body}"),
            None => assert!(status.is_success(), "{shown}: the example is refused: {status} {body}"),
        }
        let contents = self.resolve(documented).get("content").and_then(Value::as_object);
        let Some(contents) = contents else {
            assert!(body.is_empty(), "{shown}: {status} is documented without a body, got {body}");
            return;
        };
        let media = media.unwrap_or_else(|| panic!("{shown}: no Content-Type"));
        let documented_media = contents.keys().find(|m| m.split(';').next().unwrap().trim() == media);
        let content = &contents[documented_media.unwrap_or_else(|| panic!("{shown}: {media} is not documented"))];
        // HuJSON is text, even when (as here) it holds no comment.
        let instance = match is_json(&media) {
            true => serde_json::from_str(&body).unwrap_or_else(|e| panic!("{shown}: not JSON ({e}): {body}")),
            false => Value::String(body),
        };
        self.assert_valid(&content["schema"], &instance, &format!("{shown}: the {status} answer"));
    }
}
