//! Validation of NERM request and response bodies against the official
//! OpenAPI document vendored at `spec/nerm-openapi.yaml` (OpenAPI 3.0.0, MIT).
//!
//! The YAML is parsed once into a [`serde_json::Value`] and every schema in it
//! is rewritten from the OpenAPI 3.0 dialect into JSON Schema draft 7 (see
//! [`convert_schema`]). Validators are compiled lazily, one per distinct
//! schema location (so the `#/components/responses/400` that 187 operations
//! share is compiled once), and cached, so a [`Spec`] can be cloned cheaply
//! and shared between tokio tasks.
//!
//! ## How `$ref` resolution works
//!
//! * Operation-level references (`responses.'200'.$ref` →
//!   `#/components/responses/X`, `requestBody.$ref` →
//!   `#/components/requestBodies/X`) are followed by hand with JSON pointers
//!   into the converted document until an object with `content` is reached.
//! * Schema-level references (`#/components/schemas/X`) are resolved by the
//!   `jsonschema` crate itself. Each validator is compiled from a root
//!   document that is the target schema plus a `components.schemas` member
//!   holding every converted component schema, so the spec's own pointers
//!   resolve unchanged. `components` is not a JSON Schema keyword, so it only
//!   serves as a pointer target. Draft 7 ignores the siblings of `$ref`, which
//!   is also the OpenAPI 3.0 rule (`{type: object, $ref: ...}` occurs in the
//!   spec).
//!
//! ## Formats
//!
//! Format assertions are on. Draft 7's built-in checks cover `date-time`
//! (RFC 3339), `date` and `email`; `uuid` is not a draft 7 format, so it is
//! registered as a custom check (8-4-4-4-12 hex digits). Every other format in
//! the spec (`int32`, `url`, `binary`, `text`, `snake`, `string`) is unknown to
//! the crate and ignored.
//!
//! ## Known spec quirks
//!
//! * Several response schemas omit fields their write schemas accept, so
//!   strict mode rejects responses that echo them: `Role` has no `type` or
//!   `archived` (though `GET /roles` filters by `type`), `User-2` has no
//!   `profile_id`, `Profile` has no `archived`.
//! * 20 `date-time` examples are not RFC 3339 (`User-2.last_login` and
//!   `cookies_accepted_at`, `Attribute.created_at`, … show
//!   `Wed, 07 Feb 2024 12:55:20.456682000 EST -05:00`); bodies shaped like
//!   those examples fail the format check.
//! * `POST /user_profile` documents only 200 and 405, and
//!   `GET /profiles/{id}/upload/{attribute_id}` documents no responses.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, PoisonError};

use jsonschema::error::ValidationErrorKind;
use serde_json::{Map, Value};

/// The vendored OpenAPI document.
const SPEC_YAML: &str = include_str!("../spec/nerm-openapi.yaml");

/// Path prefix of the NERM API (`servers[0].url` ends in `/api`).
const API_PREFIX: &str = "/api";

/// Keys of an OpenAPI path item that hold operations.
const HTTP_METHODS: [&str; 8] = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

/// Schema keys that carry no validation meaning and are dropped on conversion.
const ANNOTATIONS: [&str; 8] =
    ["example", "examples", "xml", "externalDocs", "discriminator", "deprecated", "readOnly", "writeOnly"];

/// How many `$ref` hops to follow for responses and request bodies.
const MAX_REF_DEPTH: usize = 8;

/// Longest rendering of an instance or message inside an error string.
const MAX_RENDERED: usize = 200;

/// The NERM OpenAPI document, ready to validate bodies against.
///
/// Cloning is cheap (the state is behind an [`Arc`]), and compiled validators
/// are shared by all clones.
#[derive(Clone)]
pub struct Spec {
    inner: Arc<Inner>,
}

struct Inner {
    /// The whole document, with every schema converted to draft 7.
    doc: Value,
    strict: bool,
    templates: Vec<Template>,
    /// Compiled validators by the JSON pointer of their schema in `doc`.
    validators: Mutex<HashMap<String, Compiled>>,
}

/// A compiled validator, or why the schema would not compile.
type Compiled = Result<Arc<jsonschema::Validator>, String>;

/// What a request body or response documents about its content.
enum Body<'a> {
    /// No `content`: the body must be empty.
    Empty,
    /// A JSON media type: the schema and its JSON pointer in the document.
    Json(String, &'a Value),
    /// Content that is not JSON (e.g. `multipart/form-data`); not validated.
    NotJson,
}

impl std::fmt::Debug for Spec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spec")
            .field("strict", &self.inner.strict)
            .field("templates", &self.inner.templates.len())
            .finish_non_exhaustive()
    }
}

impl Spec {
    /// Parses the embedded spec as published (objects accept undeclared properties).
    #[must_use]
    pub fn load() -> Spec {
        Spec::with_strictness(false)
    }

    /// Parses the embedded spec. With `strict`, every schema object that
    /// declares `properties` but says nothing about `additionalProperties`
    /// gets `additionalProperties: false`, so undeclared fields are reported.
    /// Direct members of an `allOf` are left open, since closing them would
    /// reject the properties the other members contribute.
    ///
    /// # Panics
    ///
    /// If the embedded YAML does not parse, which is a bug in the vendored file.
    #[must_use]
    pub fn with_strictness(strict: bool) -> Spec {
        let mut doc: Value = serde_norway::from_str(SPEC_YAML).expect("the vendored NERM OpenAPI document parses");
        convert_document(&mut doc, strict);
        let mut templates: Vec<Template> = doc
            .get("paths")
            .and_then(Value::as_object)
            .map(|paths| paths.keys().map(|raw| Template::parse(raw)).collect())
            .unwrap_or_default();
        templates.sort_by(|a, b| a.raw.cmp(&b.raw));
        Spec { inner: Arc::new(Inner { doc, strict, templates, validators: Mutex::new(HashMap::new()) }) }
    }

    /// Whether undeclared properties are rejected.
    #[must_use]
    pub fn is_strict(&self) -> bool {
        self.inner.strict
    }

    /// Maps a request path (`/api/users/3fa8…`, `/users/3fa8…`, a full URL,
    /// with or without a query string) to the path template that documents
    /// `method` for it, e.g. `/users/{id}`. Literal segments win over
    /// parameters, earlier segments first; between equally literal templates
    /// (`/profile_types/{id}` vs `/profile_types/{uid}`) a UUID-looking
    /// segment picks `{id}` and anything else the other parameter.
    #[must_use]
    pub fn route(&self, method: &str, path: &str) -> Option<&str> {
        let method = method.to_ascii_lowercase();
        self.best_template(path, |template| self.operation(&method, template).is_some())
    }

    /// Like [`Spec::route`] but regardless of method, to tell "no such
    /// resource" (404) from "method not documented" (405).
    #[must_use]
    pub fn path_template(&self, path: &str) -> Option<&str> {
        self.best_template(path, |_| true)
    }

    /// Upper-case methods documented for `template`, e.g. `["GET", "PATCH"]`.
    #[must_use]
    pub fn methods(&self, template: &str) -> Vec<String> {
        self.path_item(template)
            .map(|item| {
                item.keys()
                    .filter(|key| HTTP_METHODS.contains(&key.as_str()))
                    .map(|key| key.to_ascii_uppercase())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every documented (upper-case method, path template) pair, sorted by template.
    #[must_use]
    pub fn operations(&self) -> Vec<(String, String)> {
        self.inner
            .templates
            .iter()
            .flat_map(|template| self.methods(&template.raw).into_iter().map(|method| (method, template.raw.clone())))
            .collect()
    }

    /// The response keys documented for an operation, e.g. `["200", "400", "500"]`.
    #[must_use]
    pub fn documented_statuses(&self, method: &str, template: &str) -> Vec<String> {
        self.operation(&method.to_ascii_lowercase(), template)
            .and_then(|operation| operation.get("responses"))
            .and_then(Value::as_object)
            .map(|responses| responses.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Checks a request body. `Value::Null` stands for "no body".
    ///
    /// # Errors
    ///
    /// One string per problem: the operation is not documented, a body was
    /// sent where none is documented (or is missing where one is required),
    /// or `JSON-pointer: problem` for each schema violation.
    pub fn validate_request(&self, method: &str, template: &str, body: &Value) -> Result<(), Vec<String>> {
        let method = method.to_ascii_lowercase();
        let what = format!("{} {template}", method.to_ascii_uppercase());
        let operation = self.operation(&method, template).ok_or_else(|| vec![format!("{what} is not documented")])?;
        let Some(request_body) = operation.get("requestBody") else {
            return expect_empty(body, || format!("{what} documents no request body"));
        };
        let location = format!("{}/requestBody", operation_location(&method, template));
        let (location, request_body) = self.resolve(location, request_body, &what)?;
        if is_empty(body) {
            let required = request_body.get("required") == Some(&Value::Bool(true));
            return if required { Err(vec![format!("{what} requires a request body")]) } else { Ok(()) };
        }
        match documented_body(&location, request_body) {
            Body::Empty => expect_empty(body, || format!("{what} documents no request content")),
            Body::NotJson => Ok(()),
            Body::Json(location, schema) => self.check(location, schema, body),
        }
    }

    /// Checks a response body for `status`. The status is looked up exactly,
    /// then as a range (`4XX`), then as `default`. A response documented
    /// without JSON content (e.g. a 204) must come with an empty body
    /// (`Value::Null` or `""`).
    ///
    /// # Errors
    ///
    /// One string per problem: the operation or status is not documented, a
    /// body was sent where none is documented, or `JSON-pointer: problem` for
    /// each schema violation.
    pub fn validate_response(
        &self,
        method: &str,
        template: &str,
        status: u16,
        body: &Value,
    ) -> Result<(), Vec<String>> {
        let method = method.to_ascii_lowercase();
        let what = format!("{} {template}", method.to_ascii_uppercase());
        let operation = self.operation(&method, template).ok_or_else(|| vec![format!("{what} is not documented")])?;
        let responses = operation.get("responses").and_then(Value::as_object);
        let (key, response) = responses
            .and_then(|responses| pick_response(responses, status))
            .ok_or_else(|| vec![format!("status {status} not documented for {what}")])?;
        let location = format!("{}/responses/{}", operation_location(&method, template), escape_pointer_token(key));
        let (location, response) = self.resolve(location, response, &what)?;
        match documented_body(&location, response) {
            Body::Empty => expect_empty(body, || format!("status {status} for {what} documents no JSON body")),
            Body::NotJson => Ok(()),
            Body::Json(location, schema) => self.check(location, schema, body),
        }
    }

    /// Compiles the validator of every documented JSON body up front (about
    /// 0.1 s in a release build, 0.4 s in debug), so that no request pays for
    /// it later. Optional: validators are otherwise compiled on first use.
    ///
    /// # Errors
    ///
    /// `METHOD template request|status: reason` for each body that cannot be
    /// checked (none with the vendored spec).
    pub fn precompile(&self) -> Result<(), Vec<String>> {
        let mut failures = Vec::new();
        for (method, template) in self.operations() {
            let what = format!("{method} {template}");
            let method = method.to_ascii_lowercase();
            let Some(operation) = self.operation(&method, &template) else {
                continue;
            };
            let base = operation_location(&method, &template);
            let mut holders = Vec::new();
            if let Some(request_body) = operation.get("requestBody") {
                holders.push(("request", format!("{base}/requestBody"), request_body));
            }
            if let Some(responses) = operation.get("responses").and_then(Value::as_object) {
                for (key, response) in responses {
                    let location = format!("{base}/responses/{}", escape_pointer_token(key));
                    holders.push((key.as_str(), location, response));
                }
            }
            for (label, location, holder) in holders {
                let checked =
                    self.resolve(location, holder, &what).and_then(|(location, holder)| {
                        match documented_body(&location, holder) {
                            Body::Json(location, schema) => {
                                self.validator(location, schema).map(drop).map_err(|error| vec![error])
                            }
                            Body::Empty | Body::NotJson => Ok(()),
                        }
                    });
                if let Err(errors) = checked {
                    failures.extend(errors.into_iter().map(|e| format!("{what} {label}: {e}")));
                }
            }
        }
        if failures.is_empty() { Ok(()) } else { Err(failures) }
    }

    fn path_item(&self, template: &str) -> Option<&Map<String, Value>> {
        self.inner.doc.get("paths")?.get(template)?.as_object()
    }

    /// The operation object for a lower-case method.
    fn operation(&self, method: &str, template: &str) -> Option<&Value> {
        if !HTTP_METHODS.contains(&method) {
            return None;
        }
        self.path_item(template)?.get(method)
    }

    fn best_template(&self, path: &str, accept: impl Fn(&str) -> bool) -> Option<&str> {
        let segments = request_segments(path);
        self.inner
            .templates
            .iter()
            .filter(|template| template.matches(&segments) && accept(&template.raw))
            .max_by(|a, b| {
                a.rank(&segments)
                    .cmp(&b.rank(&segments))
                    // Equal ranks: the alphabetically first template wins.
                    .then_with(|| b.raw.cmp(&a.raw))
            })
            .map(|template| template.raw.as_str())
    }

    /// Follows `$ref`s (to `#/components/responses/…` and the like) from
    /// `value`, found at JSON pointer `location`, until a non-reference object
    /// is reached; returns that object and its pointer.
    fn resolve<'a>(
        &'a self,
        mut location: String,
        mut value: &'a Value,
        what: &str,
    ) -> Result<(String, &'a Value), Vec<String>> {
        for _ in 0..MAX_REF_DEPTH {
            let Some(reference) = value.get("$ref").and_then(Value::as_str) else {
                return Ok((location, value));
            };
            let pointer = reference.strip_prefix('#').unwrap_or(reference);
            value = self
                .inner
                .doc
                .pointer(pointer)
                .ok_or_else(|| vec![format!("{what}: unresolvable $ref {reference}")])?;
            pointer.clone_into(&mut location);
        }
        Err(vec![format!("{what}: $ref chain longer than {MAX_REF_DEPTH}")])
    }

    fn check(&self, location: String, schema: &Value, body: &Value) -> Result<(), Vec<String>> {
        let validator = self.validator(location, schema).map_err(|error| vec![error])?;
        let errors: Vec<String> = validator.iter_errors(body).map(|e| render(&e)).collect();
        if errors.is_empty() { Ok(()) } else { Err(errors) }
    }

    fn validator(&self, location: String, schema: &Value) -> Compiled {
        let lock = || self.inner.validators.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(compiled) = lock().get(&location) {
            return compiled.clone();
        }
        // Compile without holding the lock; a racing duplicate is harmless.
        let compiled = compile(&self.inner.doc, schema);
        lock().entry(location).or_insert(compiled).clone()
    }
}

/// Builds a draft 7 validator for `schema`, whose `#/components/schemas/…`
/// references resolve against the converted spec.
fn compile(doc: &Value, schema: &Value) -> Compiled {
    let mut root = match schema {
        Value::Object(object) => object.clone(),
        other => Map::from_iter([("allOf".to_owned(), Value::Array(vec![other.clone()]))]),
    };
    if let Some(schemas) = doc.pointer("/components/schemas") {
        let components = Map::from_iter([("schemas".to_owned(), schemas.clone())]);
        root.insert("components".to_owned(), Value::Object(components));
    }
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft7)
        .should_validate_formats(true)
        .with_format("uuid", is_uuid)
        .build(&Value::Object(root))
        .map(Arc::new)
        .map_err(|error| format!("schema does not compile: {error}"))
}

/// Exact status, then its `NXX` range, then `default`.
fn pick_response(responses: &Map<String, Value>, status: u16) -> Option<(&str, &Value)> {
    let exact = status.to_string();
    let range = format!("{}XX", status / 100);
    [exact.as_str(), range.as_str(), "default"]
        .into_iter()
        .find_map(|key| responses.get_key_value(key))
        .map(|(key, response)| (key.as_str(), response))
}

/// The schema of the JSON media type of a response or request body found at
/// JSON pointer `location`.
fn documented_body<'a>(location: &str, holder: &'a Value) -> Body<'a> {
    let Some(content) = holder.get("content").and_then(Value::as_object) else {
        return Body::Empty;
    };
    if content.is_empty() {
        return Body::Empty;
    }
    let json = content.iter().find(|(media_type, _)| {
        let essence = media_type.split(';').next().unwrap_or_default().trim();
        essence == "application/json" || essence.ends_with("+json") || essence == "*/*"
    });
    let Some((media_type, schema)) = json.and_then(|(media_type, media)| Some((media_type, media.get("schema")?)))
    else {
        return Body::NotJson;
    };
    let location = format!("{location}/content/{}/schema", escape_pointer_token(media_type));
    Body::Json(location, schema)
}

/// JSON pointer of an operation object in the document.
fn operation_location(method: &str, template: &str) -> String {
    format!("/paths/{}/{method}", escape_pointer_token(template))
}

/// Escapes one JSON pointer token (`~` → `~0`, `/` → `~1`).
fn escape_pointer_token(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

fn is_empty(body: &Value) -> bool {
    match body {
        Value::Null => true,
        Value::String(text) => text.is_empty(),
        _ => false,
    }
}

fn expect_empty(body: &Value, what: impl FnOnce() -> String) -> Result<(), Vec<String>> {
    if is_empty(body) {
        Ok(())
    } else {
        Err(vec![format!("{}, but the body is {}", what(), truncate(&body.to_string()))])
    }
}

/// `JSON-pointer: problem`, with `(root)` for the whole body.
fn render(error: &jsonschema::ValidationError<'_>) -> String {
    let path = error.instance_path().as_str();
    let path = if path.is_empty() { "(root)" } else { path };
    format!("{path}: {}", describe(error))
}

fn describe(error: &jsonschema::ValidationError<'_>) -> String {
    match error.kind() {
        ValidationErrorKind::Enum { options } => {
            format!("{} is not one of {}", truncate(&error.instance().to_string()), truncate(&options.to_string()))
        }
        ValidationErrorKind::AnyOf { context } | ValidationErrorKind::OneOfNotValid { context } => {
            let mut text = String::from("matches none of the alternatives");
            for (index, branch) in context.iter().enumerate() {
                let reasons: Vec<String> = branch.iter().map(render).collect();
                let _ = write!(text, "; [{index}] {}", reasons.join(", "));
            }
            text
        }
        ValidationErrorKind::OneOfMultipleValid { .. } => String::from("matches more than one 'oneOf' alternative"),
        _ => truncate(&error.to_string()),
    }
}

fn truncate(text: &str) -> String {
    match text.char_indices().nth(MAX_RENDERED) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// `8-4-4-4-12` hexadecimal digits, either case.
fn is_uuid(text: &str) -> bool {
    text.len() == 36
        && text.bytes().enumerate().all(|(index, byte)| match index {
            8 | 13 | 18 | 23 => byte == b'-',
            _ => byte.is_ascii_hexdigit(),
        })
}

/// A path template from the spec, split into segments.
struct Template {
    raw: String,
    segments: Vec<Segment>,
}

enum Segment {
    Literal(String),
    Param(String),
}

impl Template {
    fn parse(raw: &str) -> Template {
        let segments = raw
            .split('/')
            .filter(|segment| !segment.is_empty())
            .map(|segment| match segment.strip_prefix('{').and_then(|rest| rest.strip_suffix('}')) {
                Some(name) => Segment::Param(name.to_owned()),
                None => Segment::Literal(segment.to_owned()),
            })
            .collect();
        Template { raw: raw.to_owned(), segments }
    }

    fn matches(&self, request: &[&str]) -> bool {
        self.segments.len() == request.len()
            && self.segments.iter().zip(request).all(|(segment, actual)| match segment {
                Segment::Literal(literal) => literal == actual,
                Segment::Param(_) => true,
            })
    }

    /// Higher is better: literal segments (earliest first), then parameters
    /// whose name agrees with the value's shape (`id` ⇔ UUID).
    fn rank(&self, request: &[&str]) -> (Vec<bool>, usize) {
        let literals = self.segments.iter().map(|segment| matches!(segment, Segment::Literal(_))).collect();
        let agreeing = self
            .segments
            .iter()
            .zip(request)
            .filter(|(segment, actual)| match segment {
                Segment::Param(name) => (name == "id") == is_uuid(actual),
                Segment::Literal(_) => false,
            })
            .count();
        (literals, agreeing)
    }
}

/// The path segments of a request, without scheme, host, `/api` prefix,
/// query string or fragment.
fn request_segments(path: &str) -> Vec<&str> {
    let path = match path.find("://") {
        Some(scheme_end) => {
            let rest = &path[scheme_end + 3..];
            rest.find('/').map_or("", |start| &rest[start..])
        }
        None => path,
    };
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let path = match path.strip_prefix(API_PREFIX) {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => rest,
        _ => path,
    };
    path.split('/').filter(|segment| !segment.is_empty()).collect()
}

/// How schemas are rewritten.
struct Conversion {
    strict: bool,
    /// Component schemas used directly as `allOf` members: never closed.
    allof_members: BTreeSet<String>,
}

/// Converts every schema the validator can reach: component schemas, and the
/// `content.*.schema` of component responses/request bodies and of each
/// operation's responses and request body.
fn convert_document(doc: &mut Value, strict: bool) {
    apply_known_quirks(doc);
    let mut allof_members = BTreeSet::new();
    collect_allof_members(doc, &mut allof_members);
    let conversion = Conversion { strict, allof_members };
    if let Some(schemas) = doc.pointer_mut("/components/schemas").and_then(Value::as_object_mut) {
        for (name, schema) in schemas.iter_mut() {
            let allof_member = conversion.allof_members.contains(name);
            convert_schema(schema, allof_member, &conversion);
        }
    }
    for section in ["/components/responses", "/components/requestBodies"] {
        if let Some(items) = doc.pointer_mut(section).and_then(Value::as_object_mut) {
            for item in items.values_mut() {
                convert_content(item, &conversion);
            }
        }
    }
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for item in paths.values_mut().filter_map(Value::as_object_mut) {
        for (method, operation) in item.iter_mut() {
            if !HTTP_METHODS.contains(&method.as_str()) {
                continue;
            }
            if let Some(request_body) = operation.get_mut("requestBody") {
                convert_content(request_body, &conversion);
            }
            if let Some(responses) = operation.get_mut("responses").and_then(Value::as_object_mut) {
                for response in responses.values_mut() {
                    convert_content(response, &conversion);
                }
            }
        }
    }
}

/// Where the document contradicts the behaviour docs/nerm-api.md records, that behaviour wins and the schema
/// is widened here, each with its reason:
/// * `_metadata.next`/`previous` are `null` when there is no such page (docs/nerm-api.md, "Open questions, and the simulator switch for each"), and
///   `_metadata.after_id` is `null` on the last page (docs/nerm-api.md, "Records and their values", the spec's own prose).
/// * a job's `job_data` entries name the record id per resource (`user_role_id`, `profile_id`,
///   ...); the document's example copies `user_managers`' keys (docs/nerm-api.md, "Bulk writes and jobs", [OPEN]).
fn apply_known_quirks(doc: &mut Value) {
    let job_items = "/components/responses/Job/content/application~1json/schema/properties/job_data/items";
    if let Some(Value::Object(items)) = doc.pointer_mut(job_items) {
        items.insert("additionalProperties".to_owned(), Value::Bool(true));
    }
    for (schema, fields) in
        [("Metadata", &["next", "previous"][..]), ("MetadataWithAfterId", &["next", "previous", "after_id"][..])]
    {
        for field in fields {
            let pointer = format!("/components/schemas/{schema}/properties/{field}");
            if let Some(Value::Object(prop)) = doc.pointer_mut(&pointer) {
                prop.insert("nullable".to_owned(), Value::Bool(true));
            }
        }
    }
}

fn convert_content(holder: &mut Value, conversion: &Conversion) {
    let Some(content) = holder.get_mut("content").and_then(Value::as_object_mut) else {
        return;
    };
    for media in content.values_mut() {
        if let Some(schema) = media.get_mut("schema") {
            convert_schema(schema, false, conversion);
        }
    }
}

/// Names of component schemas referenced directly from an `allOf`.
fn collect_allof_members(value: &Value, names: &mut BTreeSet<String>) {
    match value {
        Value::Object(object) => {
            if let Some(Value::Array(members)) = object.get("allOf") {
                let referenced = members
                    .iter()
                    .filter_map(|member| member.get("$ref")?.as_str())
                    .filter_map(|reference| reference.strip_prefix("#/components/schemas/"))
                    .map(|token| token.replace("~1", "/").replace("~0", "~"));
                names.extend(referenced);
            }
            object.values().for_each(|child| collect_allof_members(child, names));
        }
        Value::Array(items) => items.iter().for_each(|child| collect_allof_members(child, names)),
        _ => {}
    }
}

/// Rewrites one OpenAPI 3.0 schema object (and its subschemas) as draft 7:
///
/// * `nullable: true` widens `type: X` to `type: [X, "null"]` (and adds
///   `null` to an `enum`);
/// * annotations (`example`, `readOnly`, `writeOnly`, …) are dropped;
/// * a boolean `required: true` on a property, which is invalid in both
///   OpenAPI and JSON Schema (the spec has 19 of them) and would stop the
///   schema from compiling, is dropped. It is not lifted into the parent's
///   `required` list: `User-3` marks `id` so, and serves both the bulk
///   `PATCH /users` (id in the body) and `PATCH /users/{id}` (id in the path);
/// * `oneOf` becomes `anyOf`: the spec's alternatives overlap (objects
///   without required members, e.g. the 400 body's `InvalidJson` and
///   `ValidationErrors`, `Users` or `Job` for bulk calls), so "exactly one"
///   rejects every real body;
/// * in strict mode, `additionalProperties: false` as described at
///   [`Spec::with_strictness`].
fn convert_schema(schema: &mut Value, allof_member: bool, conversion: &Conversion) {
    let Some(object) = schema.as_object_mut() else {
        return;
    };
    for annotation in ANNOTATIONS {
        object.remove(annotation);
    }
    if object.remove("nullable") == Some(Value::Bool(true)) {
        make_nullable(object);
    }

    if object.get("required").is_some_and(Value::is_boolean) {
        object.remove("required");
    }
    if let Some(properties) = object.get_mut("properties").and_then(Value::as_object_mut) {
        for property in properties.values_mut() {
            convert_schema(property, false, conversion);
        }
    }

    if let Some(patterns) = object.get_mut("patternProperties").and_then(Value::as_object_mut) {
        for property in patterns.values_mut() {
            convert_schema(property, false, conversion);
        }
    }
    for keyword in ["additionalProperties", "not"] {
        if let Some(subschema) = object.get_mut(keyword) {
            convert_schema(subschema, false, conversion);
        }
    }
    match object.get_mut("items") {
        Some(Value::Array(items)) => items.iter_mut().for_each(|item| convert_schema(item, false, conversion)),
        Some(item) => convert_schema(item, false, conversion),
        None => {}
    }
    for keyword in ["allOf", "anyOf", "oneOf"] {
        if let Some(Value::Array(members)) = object.get_mut(keyword) {
            for member in members {
                convert_schema(member, keyword == "allOf", conversion);
            }
        }
    }

    if let Some(one_of) = object.remove("oneOf") {
        if object.contains_key("anyOf") {
            let all_of = object.entry("allOf").or_insert_with(|| Value::Array(Vec::new()));
            if let Value::Array(all_of) = all_of {
                all_of.push(Value::Object(Map::from_iter([("anyOf".to_owned(), one_of)])));
            }
        } else {
            object.insert("anyOf".to_owned(), one_of);
        }
    }

    if conversion.strict
        && !allof_member
        && object.contains_key("properties")
        && !object.contains_key("additionalProperties")
        && !object.contains_key("$ref")
    {
        object.insert("additionalProperties".to_owned(), Value::Bool(false));
    }
}

fn make_nullable(object: &mut Map<String, Value>) {
    match object.get_mut("type") {
        Some(Value::String(kind)) => {
            let kind = std::mem::take(kind);
            object.insert("type".to_owned(), Value::Array(vec![Value::String(kind), Value::String("null".to_owned())]));
        }
        Some(Value::Array(kinds)) => {
            let null = Value::String("null".to_owned());
            if !kinds.contains(&null) {
                kinds.push(null);
            }
        }
        _ => {}
    }
    if let Some(Value::Array(options)) = object.get_mut("enum")
        && !options.contains(&Value::Null)
    {
        options.push(Value::Null);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;

    use serde_json::json;

    use super::*;

    const USER_ID: &str = "3fa85f64-5717-4562-b3fc-2c963f66afa6";

    fn spec() -> &'static Spec {
        static SPEC: OnceLock<Spec> = OnceLock::new();
        SPEC.get_or_init(Spec::load)
    }

    fn strict_spec() -> &'static Spec {
        static SPEC: OnceLock<Spec> = OnceLock::new();
        SPEC.get_or_init(|| Spec::with_strictness(true))
    }

    fn user() -> Value {
        json!({
            "id": USER_ID,
            "login": "jdoe",
            "name": "Jane Doe",
            "email": "jane.doe@example.com",
            "type": "NeprofileUser",
            "status": "Active"
        })
    }

    #[test]
    fn the_spec_is_send_sync_and_cheap_to_clone() {
        fn assert_send_sync<T: Send + Sync + Clone + 'static>() {}
        assert_send_sync::<Spec>();
    }

    #[test]
    fn a_valid_user_response_passes() {
        let body = json!({ "user": user() });
        assert_eq!(spec().validate_response("GET", "/users/{id}", 200, &body), Ok(()));
        assert_eq!(strict_spec().validate_response("GET", "/users/{id}", 200, &body), Ok(()));
    }

    #[test]
    fn a_user_with_a_bogus_status_fails_naming_the_path() {
        let mut user = user();
        user["status"] = json!("Bogus");
        let errors = spec().validate_response("GET", "/users/{id}", 200, &json!({ "user": user })).unwrap_err();
        assert_eq!(errors, vec![r#"/user/status: "Bogus" is not one of ["Active","Pending","Disabled"]"#]);
    }

    #[test]
    fn a_user_list_with_metadata_passes() {
        let body = json!({
            "users": [user(), user()],
            "_metadata": { "limit": 2, "offset": 0, "total": 7, "next": "/users?limit=2&offset=2" }
        });
        assert_eq!(spec().validate_response("GET", "/users", 200, &body), Ok(()));
        assert_eq!(strict_spec().validate_response("GET", "/users", 200, &body), Ok(()));
    }

    #[test]
    fn a_profile_list_with_after_id_metadata_passes() {
        let body = json!({
            "profiles": [{
                "id": USER_ID,
                "name": "Jane Doe",
                "profile_type_id": "6c1a5bb8-4a56-4a6e-9f0c-1d1f0c9d2b7e",
                "status": "Active",
                "created_at": "2023-11-21T14:23:54.256-05:00",
                "updated_at": "2023-11-21T14:23:54.256-05:00",
                "attributes": { "personal_number": "12345", "first_name": "Jane" }
            }],
            "_metadata": { "limit": 1, "total": 7, "after_id": USER_ID }
        });
        assert_eq!(spec().validate_response("GET", "/profiles", 200, &body), Ok(()));
        assert_eq!(strict_spec().validate_response("GET", "/profiles", 200, &body), Ok(()));
    }

    #[test]
    fn route_maps_request_paths_to_templates() {
        let spec = spec();
        let cases = [
            ("GET", format!("/api/users/{USER_ID}"), "/users/{id}"),
            ("POST", "/api/user".to_owned(), "/user"),
            ("DELETE", format!("/api/user_role/{USER_ID}"), "/user_role/{id}"),
            ("GET", format!("/api/user_roles/{USER_ID}"), "/user_roles/{id}"),
            ("GET", "/api/profiles?limit=5".to_owned(), "/profiles"),
            ("GET", "/api/job_status?job_id=abc".to_owned(), "/job_status"),
            ("GET", "/api/job_status".to_owned(), "/job_status"),
            ("GET", format!("/users/{USER_ID}"), "/users/{id}"),
            ("get", format!("/api/users/{USER_ID}/avatar"), "/users/{id}/avatar"),
            ("GET", format!("https://acmeco.nonemployee.com/api/profiles/{USER_ID}/"), "/profiles/{id}"),
            ("GET", format!("/api/profile_types/{USER_ID}"), "/profile_types/{id}"),
            ("GET", "/api/profile_types/contractor".to_owned(), "/profile_types/{uid}"),
            ("POST", "/api/advanced_search/run".to_owned(), "/advanced_search/run"),
        ];
        for (method, path, template) in cases {
            assert_eq!(spec.route(method, &path), Some(template), "{method} {path}");
        }
    }

    #[test]
    fn route_ignores_undocumented_methods_and_unknown_paths() {
        let path = format!("/api/user_role/{USER_ID}");
        assert_eq!(spec().route("GET", &path), None);
        assert_eq!(spec().path_template(&path), Some("/user_role/{id}"));
        assert_eq!(spec().methods("/user_role/{id}"), vec!["DELETE"]);
        assert_eq!(spec().route("GET", "/api/nope"), None);
        assert_eq!(spec().route("GET", "/api"), None);
    }

    #[test]
    fn route_prefers_literal_segments_over_parameters() {
        assert_eq!(spec().path_template("/api/advanced_search/run"), Some("/advanced_search/run"));
        assert_eq!(spec().path_template("/api/advanced_search/42"), Some("/advanced_search/{id}"));
    }

    #[test]
    fn responses_sharing_a_component_share_one_validator() {
        let spec = Spec::load();
        let body = json!({"error": "Sorry something went wrong"});
        for (method, template) in [("GET", "/users"), ("GET", "/roles"), ("POST", "/user")] {
            assert_eq!(spec.validate_response(method, template, 500, &body), Ok(()));
        }
        let cache = spec.inner.validators.lock().unwrap();
        assert_eq!(
            cache.keys().collect::<Vec<_>>(),
            vec!["/components/responses/500/content/application~1json/schema"]
        );
    }

    #[test]
    fn a_create_user_request_validates_and_one_missing_login_fails() {
        let body = json!({"user": {"name": "a", "email": "a@b.c", "type": "NeprofileUser", "login": "a"}});
        assert_eq!(spec().validate_request("POST", "/user", &body), Ok(()));
        assert_eq!(strict_spec().validate_request("POST", "/user", &body), Ok(()));

        let missing = json!({"user": {"name": "a", "email": "a@b.c", "type": "NeprofileUser"}});
        let errors = spec().validate_request("POST", "/user", &missing).unwrap_err();
        assert_eq!(errors, vec![r#"/user: "login" is a required property"#]);
    }

    #[test]
    fn a_missing_required_request_body_and_an_unexpected_one_fail() {
        let errors = spec().validate_request("POST", "/user", &Value::Null).unwrap_err();
        assert_eq!(errors, vec!["POST /user requires a request body"]);
        assert_eq!(spec().validate_request("GET", "/users/{id}", &Value::Null), Ok(()));
        assert!(spec().validate_request("GET", "/users/{id}", &json!({"x": 1})).is_err());
    }

    #[test]
    fn a_validation_error_body_matches_what_post_user_documents_for_400() {
        let body = json!({"error": "x", "errors": {"login": "has already been taken"}});
        assert_eq!(spec().validate_response("POST", "/user", 400, &body), Ok(()));
        assert_eq!(strict_spec().validate_response("POST", "/user", 400, &body), Ok(()));
        let invalid_json = json!({"error": "Invalid JSON syntax."});
        assert_eq!(strict_spec().validate_response("POST", "/user", 400, &invalid_json), Ok(()));
    }

    #[test]
    fn strict_mode_rejects_an_undeclared_field_in_a_user_response() {
        let mut user = user();
        user["favourite_colour"] = json!("teal");
        let body = json!({ "user": user });
        assert_eq!(spec().validate_response("GET", "/users/{id}", 200, &body), Ok(()));
        let errors = strict_spec().validate_response("GET", "/users/{id}", 200, &body).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].starts_with("/user: ") && errors[0].contains("favourite_colour"), "{errors:?}");
    }

    #[test]
    fn uuid_and_date_time_formats_are_checked() {
        let mut user = user();
        user["id"] = json!("not-a-uuid");
        user["last_login"] = json!("yesterday");
        let errors = spec().validate_response("GET", "/users/{id}", 200, &json!({ "user": user })).unwrap_err();
        assert_eq!(
            errors,
            vec![r#"/user/id: "not-a-uuid" is not a "uuid""#, r#"/user/last_login: "yesterday" is not a "date-time""#,]
        );
    }

    #[test]
    fn a_status_that_is_not_documented_is_reported() {
        let errors = spec().validate_response("GET", "/users/{id}", 418, &json!({})).unwrap_err();
        assert_eq!(errors, vec!["status 418 not documented for GET /users/{id}"]);
        let errors = spec().validate_response("GET", "/nowhere", 200, &json!({})).unwrap_err();
        assert_eq!(errors, vec!["GET /nowhere is not documented"]);
    }

    #[test]
    fn a_response_without_json_content_must_have_an_empty_body() {
        let spec = spec();
        assert_eq!(spec.validate_response("DELETE", "/profiles/{id}", 204, &Value::Null), Ok(()));
        assert_eq!(spec.validate_response("DELETE", "/profiles/{id}", 204, &json!("")), Ok(()));
        let errors = spec.validate_response("DELETE", "/profiles/{id}", 204, &json!({"ok": true})).unwrap_err();
        assert_eq!(
            errors,
            vec![r#"status 204 for DELETE /profiles/{id} documents no JSON body, but the body is {"ok":true}"#]
        );
    }

    #[test]
    fn a_bulk_job_response_matches_the_users_or_job_alternative() {
        let job = json!({"job_status": {"job_id": "3ce88e47ad6dba2ddf349d21", "status": "queued"}});
        assert_eq!(spec().validate_response("POST", "/users", 200, &job), Ok(()));
        assert_eq!(strict_spec().validate_response("POST", "/users", 200, &job), Ok(()));
        let errors =
            strict_spec().validate_response("POST", "/users", 200, &json!({"job_status": "queued"})).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].starts_with("(root): matches none of the alternatives; [0] "), "{errors:?}");
    }

    #[test]
    fn nullable_properties_accept_null() {
        let mut doc = json!({"type": "boolean", "nullable": true, "example": false});
        convert_schema(&mut doc, false, &Conversion { strict: true, allof_members: BTreeSet::new() });
        assert_eq!(doc, json!({"type": ["boolean", "null"]}));
    }

    #[test]
    fn boolean_required_on_a_property_is_dropped() {
        let mut doc = json!({
            "type": "object",
            "required": ["x"],
            "properties": {"id": {"type": "string", "required": true}, "x": {"required": false}}
        });
        convert_schema(&mut doc, false, &Conversion { strict: false, allof_members: BTreeSet::new() });
        assert_eq!(
            doc,
            json!({
                "type": "object",
                "required": ["x"],
                "properties": {"id": {"type": "string"}, "x": {}}
            })
        );
    }

    #[test]
    fn a_single_user_patch_needs_no_id_in_the_body() {
        let body = json!({"user": {"title": "Director"}});
        assert_eq!(strict_spec().validate_request("PATCH", "/users/{id}", &body), Ok(()));
    }

    #[test]
    fn strict_mode_leaves_allof_members_open() {
        let mut doc = json!({
            "allOf": [
                {"properties": {"a": {"type": "string"}}},
                {"$ref": "#/components/schemas/B"}
            ]
        });
        let mut names = BTreeSet::new();
        collect_allof_members(&doc, &mut names);
        assert_eq!(names, BTreeSet::from(["B".to_owned()]));
        convert_schema(&mut doc, false, &Conversion { strict: true, allof_members: names });
        assert_eq!(doc["allOf"][0].get("additionalProperties"), None);
    }

    #[test]
    fn strict_mode_rejects_fields_the_spec_accepts_on_write_but_omits_on_read() {
        let role = json!({"role": {"id": USER_ID, "name": "Manager", "type": "NeprofileRole"}});
        assert_eq!(spec().validate_response("GET", "/roles/{id}", 200, &role), Ok(()));
        assert_eq!(
            strict_spec().validate_response("GET", "/roles/{id}", 200, &role),
            Err(vec!["/role: Additional properties are not allowed ('type' was unexpected)".to_owned()])
        );
    }

    #[test]
    fn the_resources_the_sync_uses_are_all_documented() {
        let wanted = [
            "/user",
            "/users",
            "/users/{id}",
            "/roles",
            "/roles/{id}",
            "/user_role",
            "/user_roles",
            "/user_role/{id}",
            "/profile_types",
            "/profile_types/{id}",
            "/ne_attributes",
            "/profile",
            "/profiles",
            "/profiles/{id}",
            "/user_profile",
            "/user_profiles",
            "/user_manager",
            "/user_managers",
            "/user_managers/{id}",
            "/job_status",
        ];
        let operations: Vec<(String, String)> =
            spec().operations().into_iter().filter(|(_, template)| wanted.contains(&template.as_str())).collect();
        for (method, template) in &operations {
            println!("{method:6} {template:22} {:?}", spec().documented_statuses(method, template));
        }
        assert!(!operations.is_empty());
        for template in wanted {
            assert!(operations.iter().any(|(_, t)| t == template), "{template} is not documented");
        }
    }

    #[test]
    fn every_documented_body_schema_compiles() {
        assert_eq!(spec().precompile(), Ok(()));
        assert_eq!(strict_spec().precompile(), Ok(()));
    }

    #[test]
    fn validators_are_usable_from_many_threads() {
        let spec = Spec::load();
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let spec = spec.clone();
                std::thread::spawn(move || {
                    spec.validate_response("GET", "/users/{id}", 200, &json!({ "user": user() }))
                })
            })
            .collect();
        for handle in handles {
            assert_eq!(handle.join().unwrap(), Ok(()));
        }
    }
}
