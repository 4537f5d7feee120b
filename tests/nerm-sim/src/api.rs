//! The `/api` routes: NERM's irregular paths (docs/nerm-api.md, "Base URL and envelopes"), envelopes, paging and filters.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::config::{Behaviour, NoChangeAnswer};
use crate::error::ApiError;
use crate::model::{Coll, Record};
use crate::server::Sim;
use crate::tenant::{BulkKind, ItemResult, Tenant};

type S = State<Arc<Sim>>;
type Q = Query<Vec<(String, String)>>;
type ApiResult = Result<Response, ApiError>;

pub fn routes() -> Router<Arc<Sim>> {
    Router::new()
        .route("/user", post(create_user))
        .route("/users", get(list_users).post(bulk_create_users).patch(bulk_patch_users))
        .route("/users/{id}", get(get_user).patch(patch_user).delete(delete_user))
        .route("/roles", get(list_roles))
        .route("/roles/{id}", get(get_role))
        .route("/system_roles", get(list_system_roles))
        .route("/user_role", post(create_user_role))
        .route("/user_roles", get(list_user_roles).post(bulk_create_user_roles))
        .route("/user_roles/{id}", get(get_user_role))
        .route("/user_role/{id}", delete(delete_user_role))
        .route("/profile_types", get(list_profile_types))
        .route("/profile_types/{id}", get(get_profile_type))
        .route("/ne_attributes", get(list_attributes))
        .route("/ne_attributes/{id}", get(get_attribute))
        .route("/profile", post(create_profile))
        .route("/profiles", get(list_profiles).post(bulk_create_profiles).patch(bulk_patch_profiles))
        .route("/profiles/{id}", get(get_profile).patch(patch_profile).delete(delete_profile))
        .route("/user_profile", post(create_user_profile))
        .route("/user_profiles", get(list_user_profiles).post(bulk_create_user_profiles))
        .route("/user_profiles/{id}", get(get_user_profile))
        .route("/user_profile/{id}", delete(delete_user_profile))
        .route("/user_manager", post(create_user_manager))
        .route(
            "/user_managers",
            get(list_user_managers).post(bulk_create_user_managers).patch(bulk_patch_user_managers),
        )
        .route("/user_managers/{id}", get(get_user_manager).patch(patch_user_manager))
        .route("/job_status", get(job_status))
}

// ----- request plumbing ---------------------------------------------------------------------

fn ok(v: Value) -> ApiResult {
    Ok((StatusCode::OK, axum::Json(v)).into_response())
}

fn parse_json(body: &Bytes) -> Result<Value, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    serde_json::from_slice(body).map_err(|_| ApiError::bad_request("There was an issue with your JSON syntax"))
}

/// The single-object wrapper every write needs: `{"user": {...}}` (docs/nerm-api.md, "Base URL and envelopes").
fn wrapped(body: &Bytes, key: &str) -> Result<Map<String, Value>, ApiError> {
    match parse_json(body)?.get(key) {
        Some(Value::Object(m)) if !m.is_empty() => Ok(m.clone()),
        _ => Err(ApiError::bad_request(format!("param is missing or the value is empty: {key}"))),
    }
}

/// The plural wrapper of bulk bodies: `{"users": [...]}`.
fn wrapped_list(body: &Bytes, key: &str, b: &Behaviour) -> Result<Vec<Value>, ApiError> {
    let items = match parse_json(body)?.get(key) {
        Some(Value::Array(a)) if !a.is_empty() => a.clone(),
        _ => {
            return Err(ApiError::bad_request(format!("param is missing or the value is empty: {key}")));
        }
    };
    if items.len() > b.bulk_max {
        return Err(ApiError::bad_request(format!(
            "too many records: {} given, at most {} per request",
            items.len(),
            b.bulk_max
        )));
    }
    Ok(items)
}

fn parse_id(raw: &str, kind: &'static str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| ApiError::NotFound(kind))
}

fn find<'a, T: Record>(coll: &'a Coll<T>, raw: &str, kind: &'static str) -> Result<&'a T, ApiError> {
    coll.get(&parse_id(raw, kind)?).ok_or(ApiError::NotFound(kind))
}

/// Query parameters, flat (`limit`) or in the older deepObject form (`query[limit]`).
pub struct Params<'a>(&'a [(String, String)]);

impl<'a> Params<'a> {
    pub fn get(&self, key: &str) -> Option<&'a str> {
        self.0
            .iter()
            .find(|(k, _)| k == key || k.strip_prefix("query[").and_then(|r| r.strip_suffix(']')) == Some(key))
            .map(|(_, v)| v.as_str())
    }
    fn flag(&self, key: &str) -> bool {
        self.get(key) == Some("true")
    }
}

struct Paging {
    limit: usize,
    offset: usize,
    metadata: bool,
    order: Option<String>,
}

fn paging(p: &Params, b: &Behaviour, order_fields: &[&str]) -> Result<Paging, ApiError> {
    let number = |key: &str, default: usize| -> Result<usize, ApiError> {
        match p.get(key) {
            None | Some("") => Ok(default),
            Some(v) => {
                v.parse::<usize>().map_err(|_| ApiError::bad_request(format!("{key} must be a non-negative integer")))
            }
        }
    };
    let limit = number("limit", b.page_default)?.clamp(1, b.page_max);
    let offset = number("offset", 0)?;
    if b.offset_minimum_one && p.get("offset").is_some_and(|o| !o.is_empty()) && offset < 1 {
        return Err(ApiError::bad_request("offset must be greater than or equal to 1"));
    }
    let order = match p.get("order").filter(|o| !o.is_empty()) {
        Some(o) if order_fields.contains(&o) => Some(o.to_string()),
        Some(o) => {
            return Err(ApiError::bad_request(format!("order by {o} is not supported")));
        }
        None => None,
    };
    Ok(Paging { limit, offset, metadata: p.flag("metadata"), order })
}

fn link(resource: &str, params: &Params, offset: usize, limit: usize) -> String {
    let mut s = format!("api/{resource}?offset={offset}&limit={limit}");
    for (k, v) in params.0 {
        if !matches!(k.as_str(), "offset" | "limit" | "query[offset]" | "query[limit]") {
            s.push('&');
            s.push_str(&percent_encode(k));
            s.push('=');
            s.push_str(&percent_encode(v));
        }
    }
    s
}

/// Query-component encoding: everything but RFC 3986 unreserved characters becomes `%XX`.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// One page of `matches` under `{plural: [...], _metadata: {...}}`.
fn page_of<T>(resource: &str, params: &Params, pg: &Paging, matches: Vec<&T>, render: impl Fn(&T) -> Value) -> Value {
    let total = matches.len();
    let items: Vec<Value> = match &pg.order {
        Some(field) => {
            let mut all: Vec<Value> = matches.into_iter().map(&render).collect();
            all.sort_by(|a, b| cmp_json(&a[field.as_str()], &b[field.as_str()]));
            all.into_iter().skip(pg.offset).take(pg.limit).collect()
        }
        None => matches.into_iter().skip(pg.offset).take(pg.limit).map(&render).collect(),
    };
    let mut out = Map::new();
    out.insert(resource.to_string(), Value::Array(items));
    if pg.metadata {
        let next = (pg.offset + pg.limit < total).then(|| link(resource, params, pg.offset + pg.limit, pg.limit));
        let previous = (pg.offset > 0).then(|| link(resource, params, pg.offset.saturating_sub(pg.limit), pg.limit));
        out.insert(
            "_metadata".into(),
            json!({ "limit": pg.limit, "offset": pg.offset, "total": total, "next": next, "previous": previous }),
        );
    }
    Value::Object(out)
}

fn cmp_json(a: &Value, b: &Value) -> std::cmp::Ordering {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            x.as_f64().unwrap_or(0.0).partial_cmp(&y.as_f64().unwrap_or(0.0)).unwrap_or(std::cmp::Ordering::Equal)
        }
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Null, Value::Null) => std::cmp::Ordering::Equal,
        (Value::Null, _) => std::cmp::Ordering::Less,
        (_, Value::Null) => std::cmp::Ordering::Greater,
        _ => a.to_string().cmp(&b.to_string()),
    }
}

/// Exact, case-sensitive filter match; an absent filter matches everything (docs/nerm-api.md, "Open questions, and the simulator switch for each").
fn matches_filter(p: &Params, key: &str, value: Option<&str>) -> bool {
    match p.get(key) {
        None => true,
        Some(want) => value == Some(want),
    }
}

fn uuid_filter(p: &Params, key: &str, value: Option<Uuid>) -> bool {
    match p.get(key) {
        None => true,
        Some(want) => value.is_some_and(|v| v.to_string() == want.to_ascii_lowercase()),
    }
}

/// Runs a bulk body now, or queues it as a job (docs/nerm-api.md, "Bulk writes and jobs").
fn run_bulk(sim: &Arc<Sim>, kind: BulkKind, plural: &str, items: Vec<Value>) -> ApiResult {
    let b = sim.behaviour();
    let mode = match kind {
        BulkKind::CreateProfiles | BulkKind::PatchProfiles => b.job_mode_profiles,
        _ => b.job_mode_other,
    };
    if mode.is_job(items.len()) {
        let job_id = sim.queue_job(kind, items);
        return ok(
            json!({ "info": "job has started", "job_status": { "job_id": job_id, "status": "queued" }, "status": 200 }),
        );
    }
    let mut tenant = sim.tenant();
    let before: Vec<Option<Value>> = items.iter().map(|item| rendered_now(&tenant, kind, item, &b)).collect();
    let results: Vec<ItemResult> = if b.bulk_all_or_nothing {
        let trial = tenant.dry_run_bulk(kind, &items, &b);
        if let Some(Err(e)) = trial.into_iter().find(Result::is_err) {
            return Err(e);
        }
        tenant.apply_bulk(kind, &items, &b)
    } else {
        tenant.apply_bulk(kind, &items, &b)
    };
    drop(tenant);
    let quiet = b.no_change_answer != NoChangeAnswer::Record;
    let written: Vec<Value> = results
        .into_iter()
        .zip(before)
        .filter_map(|(r, before)| r.ok().filter(|after| !(quiet && before.as_ref() == Some(after))))
        .collect();
    if quiet && written.is_empty() {
        return no_change(&b);
    }
    let mut out = Map::new();
    out.insert(plural.to_string(), Value::Array(written));
    ok(Value::Object(out))
}

/// The record a bulk PATCH item names, as it reads now (`None` for other kinds).
fn rendered_now(t: &Tenant, kind: BulkKind, item: &Value, b: &Behaviour) -> Option<Value> {
    let id = Uuid::parse_str(item.get("id")?.as_str()?).ok()?;
    match kind {
        BulkKind::PatchUsers => t.users.get(&id).map(|u| u.render()),
        BulkKind::PatchProfiles => t.profiles.get(&id).map(|p| t.render_profile(p, false, b)),
        _ => None,
    }
}

/// The answer to a PATCH that changed nothing, in the configured shape.
fn no_change(b: &Behaviour) -> ApiResult {
    match b.no_change_answer {
        NoChangeAnswer::Info => ok(json!({ "info": "No Change" })),
        NoChangeAnswer::Empty | NoChangeAnswer::Record => ok(json!({})),
    }
}

/// A single PATCH's answer: the record, or the no-change shape when nothing changed.
fn patched(key: &str, before: Option<Value>, after: Value, b: &Behaviour) -> ApiResult {
    if b.no_change_answer != NoChangeAnswer::Record && before.as_ref() == Some(&after) {
        return no_change(b);
    }
    let mut out = Map::new();
    out.insert(key.to_string(), after);
    ok(Value::Object(out))
}

// ----- users --------------------------------------------------------------------------------

async fn create_user(State(sim): S, body: Bytes) -> ApiResult {
    let obj = wrapped(&body, "user")?;
    ok(json!({ "user": sim.tenant().create_user(&obj)? }))
}

async fn list_users(State(sim): S, Query(q): Q) -> ApiResult {
    let p = Params(&q);
    let b = sim.behaviour();
    let pg = paging(&p, &b, &["name", "login", "email", "title", "status", "type", "uid", "id"])?;
    let t = sim.tenant();
    let status = p.get("user_status").or_else(|| p.get("status"));
    let candidates: Vec<&crate::model::User> = match p.get("login") {
        // Fast path for the idempotency lookup: the login index, then the exact check.
        Some(l) => t.user_by_login(l).into_iter().collect(),
        None => t.users.iter().collect(),
    };
    let matches = candidates
        .into_iter()
        .filter(|u| {
            matches_filter(&p, "login", Some(&u.login))
                && matches_filter(&p, "name", Some(&u.name))
                && matches_filter(&p, "email", Some(&u.email))
                && matches_filter(&p, "title", u.title.as_deref())
                && matches_filter(&p, "type", Some(u.kind.as_str()))
                && matches_filter(&p, "sailpoint_identity_id", u.sailpoint_identity_id.as_deref())
                && status.is_none_or(|s| u.status == s)
        })
        .collect();
    ok(page_of("users", &p, &pg, matches, |u| u.render()))
}

async fn get_user(State(sim): S, Path(id): Path<String>) -> ApiResult {
    let t = sim.tenant();
    ok(json!({ "user": find(&t.users, &id, "User")?.render() }))
}

async fn patch_user(State(sim): S, Path(id): Path<String>, body: Bytes) -> ApiResult {
    let id = parse_id(&id, "User")?;
    let obj = wrapped(&body, "user")?;
    let b = sim.behaviour();
    let mut t = sim.tenant();
    let before = t.users.get(&id).map(|u| u.render());
    let after = t.patch_user(id, &obj)?;
    patched("user", before, after, &b)
}

async fn delete_user(State(sim): S, Path(id): Path<String>) -> ApiResult {
    sim.tenant().delete_user(parse_id(&id, "User")?)?;
    ok(json!({ "info": "object deleted" }))
}

async fn bulk_create_users(State(sim): S, body: Bytes) -> ApiResult {
    let items = wrapped_list(&body, "users", &sim.behaviour())?;
    run_bulk(&sim, BulkKind::CreateUsers, "users", items)
}

async fn bulk_patch_users(State(sim): S, body: Bytes) -> ApiResult {
    let items = wrapped_list(&body, "users", &sim.behaviour())?;
    run_bulk(&sim, BulkKind::PatchUsers, "users", items)
}

// ----- roles --------------------------------------------------------------------------------

async fn list_roles(State(sim): S, Query(q): Q) -> ApiResult {
    let p = Params(&q);
    let pg = paging(&p, &sim.behaviour(), &["name", "uid", "id"])?;
    let t = sim.tenant();
    let matches = t
        .roles
        .iter()
        .filter(|r| matches_filter(&p, "type", Some(&r.kind)) && matches_filter(&p, "name", Some(&r.name)))
        .collect();
    ok(page_of("roles", &p, &pg, matches, |r| r.render()))
}

async fn get_role(State(sim): S, Path(id): Path<String>) -> ApiResult {
    let t = sim.tenant();
    ok(json!({ "role": find(&t.roles, &id, "Role")?.render() }))
}

/// The two system default roles (docs/nerm-api.md, "Records and their values"), with ids stable per process.
async fn list_system_roles(State(sim): S, Query(q): Q) -> ApiResult {
    let p = Params(&q);
    let pg = paging(&p, &sim.behaviour(), &["name", "uid", "id"])?;
    let roles = [("profile_contributor", "Profile Contributor"), ("profile_owner", "Profile Owner")];
    let matches: Vec<&(&str, &str)> = roles.iter().collect();
    ok(page_of(
        "system_roles",
        &p,
        &pg,
        matches,
        |(uid, name)| json!({ "id": Uuid::new_v5(&Uuid::NAMESPACE_OID, uid.as_bytes()), "uid": uid, "name": name }),
    ))
}

// ----- user roles ---------------------------------------------------------------------------

async fn create_user_role(State(sim): S, body: Bytes) -> ApiResult {
    let obj = wrapped(&body, "user_role")?;
    ok(json!({ "user_role": sim.tenant().create_user_role(&obj)? }))
}

async fn list_user_roles(State(sim): S, Query(q): Q) -> ApiResult {
    let p = Params(&q);
    let pg = paging(&p, &sim.behaviour(), &["user_id", "role_id", "uid", "id"])?;
    let t = sim.tenant();
    let matches = t
        .user_roles
        .iter()
        .filter(|r| uuid_filter(&p, "user_id", Some(r.user_id)) && uuid_filter(&p, "role_id", Some(r.role_id)))
        .collect();
    ok(page_of("user_roles", &p, &pg, matches, |r| r.render()))
}

async fn get_user_role(State(sim): S, Path(id): Path<String>) -> ApiResult {
    let t = sim.tenant();
    ok(json!({ "user_role": find(&t.user_roles, &id, "UserRole")?.render() }))
}

async fn delete_user_role(State(sim): S, Path(id): Path<String>) -> ApiResult {
    sim.tenant().delete_user_role(parse_id(&id, "UserRole")?)?;
    ok(json!({}))
}

async fn bulk_create_user_roles(State(sim): S, body: Bytes) -> ApiResult {
    let items = wrapped_list(&body, "user_roles", &sim.behaviour())?;
    run_bulk(&sim, BulkKind::CreateUserRoles, "user_roles", items)
}

// ----- profile types and attributes ---------------------------------------------------------

async fn list_profile_types(State(sim): S, Query(q): Q) -> ApiResult {
    let p = Params(&q);
    let pg = paging(&p, &sim.behaviour(), &["name", "uid", "id", "category"])?;
    let archived = p.flag("archived");
    let t = sim.tenant();
    let matches = t
        .profile_types
        .iter()
        .filter(|pt| matches_filter(&p, "name", Some(&pt.name)) && pt.archived == archived)
        .collect();
    ok(page_of("profile_types", &p, &pg, matches, |pt| pt.render()))
}

async fn get_profile_type(State(sim): S, Path(key): Path<String>) -> ApiResult {
    let t = sim.tenant();
    let pt = t.profile_type_by_key(&key).ok_or(ApiError::NotFound("ProfileType"))?;
    ok(json!({ "profile_type": pt.render() }))
}

async fn list_attributes(State(sim): S, Query(q): Q) -> ApiResult {
    let p = Params(&q);
    let pg = paging(&p, &sim.behaviour(), &["label", "uid", "id", "data_type"])?;
    let t = sim.tenant();
    let matches = t
        .ne_attributes
        .iter()
        .filter(|a| matches_filter(&p, "label", Some(&a.label)) && matches_filter(&p, "data_type", Some(&a.data_type)))
        .collect();
    ok(page_of("ne_attributes", &p, &pg, matches, |a| a.render()))
}

async fn get_attribute(State(sim): S, Path(key): Path<String>) -> ApiResult {
    let t = sim.tenant();
    let a = t.attribute_by_key(&key).ok_or(ApiError::NotFound("Attribute"))?;
    ok(json!({ "ne_attribute": a.render() }))
}

// ----- profiles -----------------------------------------------------------------------------

async fn create_profile(State(sim): S, body: Bytes) -> ApiResult {
    let obj = wrapped(&body, "profile")?;
    let b = sim.behaviour();
    ok(json!({ "profile": sim.tenant().create_profile(&obj, &b)? }))
}

async fn list_profiles(State(sim): S, Query(q): Q) -> ApiResult {
    let p = Params(&q);
    let b = sim.behaviour();
    let exclude = p.flag("exclude_attributes");
    let updated_after = match p.get("updated_after").filter(|s| !s.is_empty()) {
        Some(d) if crate::tenant::date_matches(d, "yyyy-mm-dd") => Some(d.to_string()),
        Some(_) => {
            return Err(ApiError::bad_request("updated_after must be a date (YYYY-MM-DD)"));
        }
        None => None,
    };
    let type_ok = |pt: Uuid| uuid_filter(&p, "profile_type_id", Some(pt));
    let date_ok = |day: &str| updated_after.as_deref().is_none_or(|d| day >= d);
    if let Some(after) = p.get("after_id") {
        // Keyset paging: id order, only type/limit/updated_after honoured (docs/nerm-api.md, "Records and their values").
        if p.get("offset").is_some() {
            return Err(ApiError::bad_request("offset cannot be used together with after_id"));
        }
        let after = match after.trim() {
            "" => None,
            s => Some(Uuid::parse_str(s).map_err(|_| ApiError::bad_request("after_id must be a profile id"))?),
        };
        let pg = paging(&p, &b, &[])?;
        let t = sim.tenant();
        let mut it = t
            .profile_ids_after(after)
            .filter_map(|id| t.profiles.get(id))
            .filter(|pr| type_ok(pr.profile_type_id) && date_ok(&pr.updated_on));
        let page: Vec<&crate::model::Profile> = it.by_ref().take(pg.limit).collect();
        let more = it.next().is_some();
        if page.is_empty() && after.is_some() && b.after_id_legacy_400 {
            return Err(ApiError::bad_request("No more records after the given after_id"));
        }
        let last = page.last().map(|pr| pr.id);
        let items: Vec<Value> = page.iter().map(|pr| t.render_profile(pr, exclude, &b)).collect();
        let mut out = json!({ "profiles": items });
        if pg.metadata {
            let total = t.profiles.iter().filter(|pr| type_ok(pr.profile_type_id) && date_ok(&pr.updated_on)).count();
            let next_after = if more || b.after_id_legacy_400 { last } else { None };
            out["_metadata"] = json!({ "limit": pg.limit, "offset": 0, "total": total, "next": null,
                                       "previous": null, "after_id": next_after });
        }
        return ok(out);
    }
    let pg = paging(&p, &b, &["name", "status", "created_at", "updated_at", "uid", "id", "profile_type_id"])?;
    let t = sim.tenant();
    let matches = t
        .profiles
        .iter()
        .filter(|pr| {
            type_ok(pr.profile_type_id)
                && date_ok(&pr.updated_on)
                && matches_filter(&p, "name", Some(&pr.name))
                && matches_filter(&p, "status", Some(&pr.status))
        })
        .collect();
    ok(page_of("profiles", &p, &pg, matches, |pr| t.render_profile(pr, exclude, &b)))
}

async fn get_profile(State(sim): S, Path(id): Path<String>) -> ApiResult {
    let b = sim.behaviour();
    let t = sim.tenant();
    let pr = find(&t.profiles, &id, "Profile")?;
    ok(json!({ "profile": t.render_profile(pr, false, &b) }))
}

async fn patch_profile(State(sim): S, Path(id): Path<String>, body: Bytes) -> ApiResult {
    let id = parse_id(&id, "Profile")?;
    let obj = wrapped(&body, "profile")?;
    let b = sim.behaviour();
    let mut t = sim.tenant();
    let before = t.profiles.get(&id).map(|p| t.render_profile(p, false, &b));
    let after = t.patch_profile(id, &obj, &b)?;
    patched("profile", before, after, &b)
}

async fn delete_profile(State(sim): S, Path(id): Path<String>) -> ApiResult {
    sim.tenant().delete_profile(parse_id(&id, "Profile")?)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn bulk_create_profiles(State(sim): S, body: Bytes) -> ApiResult {
    let items = wrapped_list(&body, "profiles", &sim.behaviour())?;
    run_bulk(&sim, BulkKind::CreateProfiles, "profiles", items)
}

async fn bulk_patch_profiles(State(sim): S, body: Bytes) -> ApiResult {
    let items = wrapped_list(&body, "profiles", &sim.behaviour())?;
    run_bulk(&sim, BulkKind::PatchProfiles, "profiles", items)
}

// ----- user ↔ profile links -----------------------------------------------------------------

async fn create_user_profile(State(sim): S, body: Bytes) -> ApiResult {
    let obj = wrapped(&body, "user_profile")?;
    let b = sim.behaviour();
    ok(json!({ "user_profile": sim.tenant().create_user_profile(&obj, &b)? }))
}

async fn list_user_profiles(State(sim): S, Query(q): Q) -> ApiResult {
    let p = Params(&q);
    let pg = paging(&p, &sim.behaviour(), &["user_id", "profile_id", "relationship_type", "uid", "id"])?;
    let t = sim.tenant();
    let matches = t
        .user_profiles
        .iter()
        .filter(|r| {
            uuid_filter(&p, "user_id", Some(r.user_id))
                && uuid_filter(&p, "profile_id", Some(r.profile_id))
                && uuid_filter(&p, "ne_attribute_id", r.ne_attribute_id)
                && matches_filter(&p, "relationship_type", Some(&r.relationship_type))
        })
        .collect();
    ok(page_of("user_profiles", &p, &pg, matches, |r| r.render()))
}

async fn get_user_profile(State(sim): S, Path(id): Path<String>) -> ApiResult {
    let t = sim.tenant();
    ok(json!({ "user_profile": find(&t.user_profiles, &id, "UserProfile")?.render() }))
}

async fn delete_user_profile(State(sim): S, Path(id): Path<String>) -> ApiResult {
    sim.tenant().delete_user_profile(parse_id(&id, "UserProfile")?)?;
    ok(json!({}))
}

async fn bulk_create_user_profiles(State(sim): S, body: Bytes) -> ApiResult {
    let items = wrapped_list(&body, "user_profiles", &sim.behaviour())?;
    run_bulk(&sim, BulkKind::CreateUserProfiles, "user_profiles", items)
}

// ----- user managers ------------------------------------------------------------------------

async fn create_user_manager(State(sim): S, body: Bytes) -> ApiResult {
    let obj = wrapped(&body, "user_manager")?;
    ok(json!({ "user_manager": sim.tenant().create_user_manager(&obj)? }))
}

async fn list_user_managers(State(sim): S, Query(q): Q) -> ApiResult {
    let p = Params(&q);
    let pg = paging(&p, &sim.behaviour(), &["user_id", "manager_id", "uid", "id"])?;
    let t = sim.tenant();
    let matches = t
        .user_managers
        .iter()
        .filter(|r| uuid_filter(&p, "user_id", Some(r.user_id)) && uuid_filter(&p, "manager_id", Some(r.manager_id)))
        .collect();
    ok(page_of("user_managers", &p, &pg, matches, |r| r.render()))
}

async fn get_user_manager(State(sim): S, Path(id): Path<String>) -> ApiResult {
    let t = sim.tenant();
    ok(json!({ "user_manager": find(&t.user_managers, &id, "UserManager")?.render() }))
}

async fn patch_user_manager(State(sim): S, Path(id): Path<String>, body: Bytes) -> ApiResult {
    let id = parse_id(&id, "UserManager")?;
    let obj = wrapped(&body, "user_manager")?;
    ok(json!({ "user_manager": sim.tenant().patch_user_manager(id, &obj)? }))
}

async fn bulk_create_user_managers(State(sim): S, body: Bytes) -> ApiResult {
    let items = wrapped_list(&body, "user_managers", &sim.behaviour())?;
    run_bulk(&sim, BulkKind::CreateUserManagers, "user_managers", items)
}

async fn bulk_patch_user_managers(State(sim): S, body: Bytes) -> ApiResult {
    let items = wrapped_list(&body, "user_managers", &sim.behaviour())?;
    run_bulk(&sim, BulkKind::PatchUserManagers, "user_managers", items)
}

// ----- jobs ---------------------------------------------------------------------------------

/// `GET /job_status?job_id=` answers unwrapped (docs/nerm-api.md, "Bulk writes and jobs").
async fn job_status(State(sim): S, Query(q): Q) -> ApiResult {
    let p = Params(&q);
    let Some(job_id) = p.get("job_id").filter(|s| !s.is_empty()) else {
        return Err(ApiError::bad_request("param is missing or the value is empty: job_id"));
    };
    let t: std::sync::MutexGuard<'_, Tenant> = sim.tenant();
    let job = t.job_by_job_id(job_id).ok_or_else(|| ApiError::bad_request(format!("job {job_id} was not found")))?;
    ok(job.render_status())
}
