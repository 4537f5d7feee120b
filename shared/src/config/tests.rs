use super::*;

pub(crate) const EXAMPLE: &str = include_str!("../../../infra/config/example.toml");

const REFERENCE_HEADER: &[&str] = &[
    "employee_id",
    "login",
    "email",
    "first_name",
    "last_name",
    "title",
    "department",
    "manager_login",
    "status",
    "nerm_roles",
];

const EMPLOYEE_TYPE_ID: &str = "7b0e6a57-0000-4000-8000-000000000001";
const CONTRACTOR_TYPE_ID: &str = "7b0e6a57-0000-4000-8000-000000000002";

/// The demo tenant the simulator ships (README "Demo tenant").
pub(crate) fn demo_catalog() -> NermCatalog {
    let text = |id: &str, uid: &str, label: &str| CatalogAttribute {
        id: id.to_owned(),
        uid: uid.to_owned(),
        label: label.to_owned(),
        data_type: "text field".to_owned(),
        profile_type_id: None,
    };
    let select = |id: &str, uid: &str, label: &str, type_id: &str| CatalogAttribute {
        id: id.to_owned(),
        uid: uid.to_owned(),
        label: label.to_owned(),
        data_type: "profile select".to_owned(),
        profile_type_id: Some(type_id.to_owned()),
    };
    let role = |id: &str, name: &str, groups: &[&str], role_type: RoleType| CatalogRole {
        id: id.to_owned(),
        uid: format!("{}_role", name.to_lowercase().replace(' ', "_")),
        name: name.to_owned(),
        groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        role_type: Some(role_type),
    };
    let profile_type = |id: &str, uid: &str, name: &str| CatalogProfileType {
        id: id.to_owned(),
        uid: uid.to_owned(),
        name: name.to_owned(),
    };
    NermCatalog {
        profile_types: vec![
            profile_type(EMPLOYEE_TYPE_ID, "employee", "Employee"),
            profile_type(CONTRACTOR_TYPE_ID, "contractor", "Contractor"),
        ],
        attributes: vec![
            text("a-01", "employee_id", "Employee ID"),
            text("a-02", "first_name", "First Name"),
            text("a-03", "last_name", "Last Name"),
            text("a-04", "email", "Email"),
            text("a-05", "job_title", "Job Title"),
            text("a-06", "department", "Department"),
            text("a-07", "login", "Login"),
            select("a-08", "manager", "Manager", EMPLOYEE_TYPE_ID),
            select("a-09", "sponsor", "Sponsor", EMPLOYEE_TYPE_ID),
        ],
        roles: vec![
            role("r-1", "Sponsor", &["Sponsors"], RoleType::NeprofileRole),
            role("r-2", "Manager", &["Managers"], RoleType::NeprofileRole),
            role("r-3", "Administrator", &["NERM_Admins", "ORG_ADMIN"], RoleType::NeprofileRole),
            role("r-4", "Employee", &["Employees"], RoleType::NeprofileRole),
            role("r-5", "Vendor Portal", &["Vendors"], RoleType::NeaccessRole),
        ],
    }
}

/// The example with one piece of text replaced (which must be present).
fn example_with(old: &str, new: &str) -> String {
    assert!(EXAMPLE.contains(old), "example lacks {old:?}");
    EXAMPLE.replacen(old, new, 1)
}

fn example() -> MappingConfig {
    MappingConfig::from_toml_str(EXAMPLE).expect("example parses")
}

fn load_err(text: &str) -> ConfigError {
    MappingConfig::from_toml_str(text).expect_err("config should be rejected")
}

fn resolve_err(config: &MappingConfig, catalog: &NermCatalog) -> ConfigError {
    config.resolve(catalog).expect_err("resolve should be rejected")
}

fn only_problem(err: &ConfigError) -> &Problem {
    match err.problems() {
        [one] => one,
        other => panic!("expected exactly one problem, got {other:?} ({err})"),
    }
}

const MINIMAL: &str = r#"
[columns]
key = "employee_id"
login = "login"
status = "status"

[user]
name = "{first_name} {last_name}"
email = "{email}"
status_map = { Active = "Active", Terminated = "Disabled" }

[profile]
type = "employee"
key_attribute = "employee_id"
status_map = { Active = "Active", Terminated = "Terminated" }
attributes = { employee_id = "{employee_id}" }
"#;

// ---------------------------------------------------------------- the example

#[test]
fn the_example_parses_without_warnings() {
    let config = example();
    assert_eq!(config.warnings(), &[] as &[ConfigWarning]);
    assert_eq!(config.csv.delimiter, Delimiter::Auto);
    assert_eq!(config.columns.manager.as_deref(), Some("manager_login"));
    assert_eq!(config.roles.strategy, RoleStrategy::GroupStrings);
    assert_eq!(config.contributors.self_relationship, SelfRelationship::Owner);
    assert_eq!(config.sync.mode, SyncMode::Upsert);
    assert_eq!(config.profile.attributes.len(), 7);
}

#[test]
fn the_config_reference_embeds_the_example_verbatim() {
    let doc = include_str!("../../../docs/config.md");
    let embedded = format!("```toml\n{}\n```", EXAMPLE.trim_end());
    assert!(doc.contains(&embedded), "docs/config.md must embed infra/config/example.toml verbatim");
}

#[test]
fn the_example_fits_the_reference_header() {
    example().check_columns(REFERENCE_HEADER).unwrap();
}

#[test]
fn the_example_resolves_against_the_demo_tenant() {
    let resolved = example().resolve(&demo_catalog()).unwrap();
    assert_eq!(resolved.profile_type().id, EMPLOYEE_TYPE_ID);
    assert_eq!(resolved.key_attribute().uid, "employee_id");
    assert_eq!(resolved.key_attribute().id, "a-01");
    assert_eq!(resolved.manager_attribute().unwrap().id, "a-08");
    let ids: Vec<&str> = resolved.attributes().iter().map(|a| a.id.as_str()).collect();
    assert_eq!(ids.len(), 7);
    let defaults: Vec<&str> = resolved.default_roles().map(|r| r.id.as_str()).collect();
    assert_eq!(defaults, ["r-4"]);
    assert!(resolved.warnings().is_empty());
}

#[test]
fn the_example_renders_a_reference_row() {
    let config = example();
    let row =
        std::collections::HashMap::from([("first_name", "Ada"), ("last_name", "Lovelace"), ("title", "Engineer")]);
    let get = |c: &str| row.get(c).copied();
    let mut out = String::new();
    config.user.name.render(get, &mut out);
    assert_eq!(out, "Ada Lovelace");
    out.clear();
    config.user.title.as_ref().unwrap().render(get, &mut out);
    assert_eq!(out, "Engineer");
}

// ---------------------------------------------------------------- defaults

#[test]
fn a_minimal_config_gets_the_documented_defaults() {
    let config = MappingConfig::from_toml_str(MINIMAL).unwrap();
    assert_eq!(config.csv.delimiter, Delimiter::Auto);
    assert_eq!(config.csv.encoding, Encoding::Utf8);
    assert_eq!(config.csv.max_field_bytes, 8192);
    assert_eq!(config.csv.max_rows, 100_000);
    assert_eq!(config.csv.max_file_bytes, 64 * 1024 * 1024);
    assert_eq!(config.csv.headers, None);
    assert_eq!(config.columns.roles_separator, ';');
    assert_eq!(config.user.user_type, UserType::NeprofileUser);
    assert_eq!(config.user.title, None);
    assert_eq!(config.roles.strategy, RoleStrategy::GroupStrings);
    assert!(!config.roles.managed);
    assert_eq!(config.contributors.self_relationship, SelfRelationship::Owner);
    assert!(!config.managers.user_manager, "no manager column, no link");
    assert_eq!(config.managers.profile_attribute, None);
    assert_eq!(config.sync.mode, SyncMode::Upsert);
    assert_eq!(config.sync.leaver_user_status, UserStatus::Disabled);
    assert_eq!(config.sync.leaver_profile_status, ProfileStatus::Inactive);
    assert_eq!(config.sync.max_disable_percent, 10.0);
    assert!(!config.sync.allow_mass_disable);
    let n = &config.nerm;
    assert_eq!(
        (
            n.requests_per_window,
            n.window_seconds,
            n.concurrency,
            n.page_size,
            n.timeout_seconds,
            n.max_retries,
            n.retry_budget
        ),
        (100, 10, 4, 500, 30, 6, 1000)
    );
    assert_eq!(n.window(), std::time::Duration::from_secs(10));
}

#[test]
fn the_user_manager_link_defaults_on_when_a_manager_column_exists() {
    let config = example_with("user_manager = true", "").parse_ok();
    assert!(config.managers.user_manager);
}

#[test]
fn a_config_without_any_role_source_warns_that_users_cannot_sign_in() {
    let config = MappingConfig::from_toml_str(MINIMAL).unwrap();
    let w = &config.warnings()[0];
    assert_eq!(w.key, "roles");
    assert!(w.message.contains("cannot sign in"), "{w}");
}

// ---------------------------------------------------------------- syntax and schema errors

#[test]
fn a_syntax_error_reports_line_and_column() {
    let text = example_with("encoding = \"utf-8\"", "encoding = = \"utf-8\"");
    let err = load_err(&text);
    let ConfigError::Syntax { line, column, .. } = &err else {
        panic!("expected a syntax error, got {err:?}");
    };
    let want = line_of(&text, "encoding = = ");
    assert_eq!((*line, *column), (want, 12));
    assert!(
        err.to_string().starts_with(&format!("mapping config is not valid TOML (line {want}, column 12): ")),
        "{err}"
    );
}

#[test]
fn a_duplicate_key_is_a_syntax_error_with_its_line() {
    let text = example_with("[csv]\n", "[csv]\nencoding = \"utf-8\"\n");
    let err = load_err(&text);
    let want = line_of(&text, "encoding = \"utf-8\"            #");
    assert!(err.to_string().contains(&format!("(line {want}, column 1): duplicate key")), "{err}");
}

#[test]
fn an_unknown_key_is_reported_with_its_path_and_line() {
    let text = example_with("key_attribute =", "key_atribute =");
    let err = load_err(&text);
    assert_eq!(
        err.to_string(),
        format!(
            "mapping config key `profile.key_atribute` (line {}, column 1): unknown field `key_atribute`, expected one of `type`, `name`, `key_attribute`, `status_map`, `attributes`",
            line_of(&text, "key_atribute =")
        )
    );
}

#[test]
fn an_unknown_section_is_rejected() {
    let err = load_err(&format!("{EXAMPLE}\n[manager]\nuser_manager = true\n"));
    let ConfigError::Key { path, message, .. } = &err else {
        panic!("expected a key error, got {err:?}");
    };
    assert_eq!(path, "manager");
    assert!(message.starts_with("unknown field `manager`"), "{message}");
}

#[test]
fn a_bad_enum_value_names_the_key_and_the_allowed_values() {
    let text = example_with("Leave = \"Active\"", "Leave = \"Away\"");
    let err = load_err(&text);
    assert_eq!(
        err.to_string(),
        format!(
            "mapping config key `user.status_map.Leave` (line {}, column 9): unknown variant `Away`, expected one of `Active`, `Pending`, `Disabled`",
            line_of(&text, "Leave = \"Away\"")
        )
    );
}

#[test]
fn a_bad_profile_status_lists_the_nerm_values() {
    let err = load_err(&example_with("Leave = \"On Leave\"", "Leave = \"Leave\""));
    assert!(
        err.to_string().contains("`profile.status_map.Leave`")
            && err.to_string().contains("expected one of `Active`, `Inactive`, `On Leave`, `Terminated`"),
        "{err}"
    );
}

#[test]
fn a_bad_strategy_is_rejected() {
    let err = load_err(&example_with("strategy = \"group_strings\"", "strategy = \"groups\""));
    assert!(
        err.to_string().starts_with("mapping config key `roles.strategy`")
            && err.to_string().contains("expected `group_strings` or `user_role`"),
        "{err}"
    );
}

#[test]
fn a_bad_delimiter_is_rejected_with_the_choices() {
    let err = load_err(&example_with("delimiter = \"auto\"", "delimiter = \"|\""));
    assert!(
        err.to_string().starts_with("mapping config key `csv.delimiter`")
            && err.to_string().contains("unknown delimiter \"|\""),
        "{err}"
    );
}

#[test]
fn a_wrong_value_type_is_reported() {
    let err = load_err(&example_with("concurrency = 4", "concurrency = -4"));
    assert!(err.to_string().starts_with("mapping config key `nerm.concurrency`"), "{err}");
}

#[test]
fn a_missing_required_key_is_reported() {
    let err = load_err(&example_with("login = \"login\"               #", "#"));
    assert!(
        err.to_string().starts_with("mapping config key `columns`")
            && err.to_string().contains("missing field `login`"),
        "{err}"
    );
}

// ---------------------------------------------------------------- semantic errors

#[test]
fn an_unknown_placeholder_names_the_placeholder_and_the_field() {
    let err = load_err(&example_with(
        "name = \"{first_name} {last_name}\"\nemail",
        "name = \"{frist_name} {last_name}\"\nemail",
    ));
    let p = only_problem(&err);
    assert_eq!(p.kind, ProblemKind::UnknownPlaceholder);
    assert_eq!(p.key, "user.name");
    assert!(
        err.to_string().starts_with(
            "invalid mapping config: `user.name`: placeholder `{frist_name}` is not a column listed in `csv.headers` (known: `department`,"
        ),
        "{err}"
    );
}

#[test]
fn an_unknown_column_in_columns_is_reported_against_the_declared_headers() {
    let err = load_err(&example_with("manager = \"manager_login\"", "manager = \"manager\""));
    let p = only_problem(&err);
    assert_eq!((p.key.as_str(), p.kind), ("columns.manager", ProblemKind::UnknownColumn));
}

#[test]
fn a_template_syntax_error_names_the_field() {
    let err = load_err(&example_with("job_title = \"{title}\"", "job_title = \"{title\""));
    assert_eq!(
        err.to_string(),
        "invalid mapping config: `profile.attributes.job_title`: bad template \"{title\": `{` at offset 0 is never closed (write `{{` for a literal brace)"
    );
}

#[test]
fn a_constant_email_template_is_rejected() {
    let err = load_err(&example_with("email = \"{email}\"", "email = \"x@example.com\""));
    let p = only_problem(&err);
    assert_eq!(p.key, "user.email");
    assert!(p.message.contains("uses no column"), "{p}");
}

#[test]
fn a_percent_outside_0_to_100_is_rejected() {
    for bad in ["150.0", "-1", "nan"] {
        let err = load_err(&example_with("max_disable_percent = 10.0", &format!("max_disable_percent = {bad}")));
        let p = only_problem(&err);
        assert_eq!(p.key, "sync.max_disable_percent");
        assert!(p.message.starts_with("must be a percentage between 0 and 100"), "{p}");
    }
    assert!(
        MappingConfig::from_toml_str(&example_with("max_disable_percent = 10.0", "max_disable_percent = 100")).is_ok()
    );
}

#[test]
fn a_portal_user_type_is_refused_at_load_saying_what_is_supported() {
    let err = load_err(&example_with("type = \"NeprofileUser\"", "type = \"NeaccessUser\""));
    let p = only_problem(&err);
    assert_eq!(p.key, "user.type");
    assert!(p.message.contains("not supported") && p.message.contains("Supported: \"NeprofileUser\""), "{p}");
}

#[test]
fn a_page_size_above_500_is_rejected() {
    let err = load_err(&example_with("page_size = 500", "page_size = 501"));
    assert_eq!(err.to_string(), "invalid mapping config: `nerm.page_size`: must be between 1 and 500, got 501");
}

#[test]
fn all_problems_are_reported_at_once() {
    let text = example_with("page_size = 500", "page_size = 0");
    let text = text.replacen("concurrency = 4", "concurrency = 0", 1);
    let text = text.replacen("max_rows = 100000", "max_rows = 0", 1);
    let err = load_err(&text);
    let keys: Vec<&str> = err.problems().iter().map(|p| p.key.as_str()).collect();
    assert_eq!(keys, ["csv.max_rows", "nerm.concurrency", "nerm.page_size"]);
    assert!(err.to_string().starts_with("invalid mapping config (3 problems): "), "{err}");
}

#[test]
fn the_key_attribute_must_map_exactly_the_key_column() {
    let err = load_err(&example_with("employee_id = \"{employee_id}\"", "employee_id = \"E{employee_id}\""));
    let p = only_problem(&err);
    assert_eq!(p.key, "profile.key_attribute");
    assert!(p.message.contains("must be mapped to exactly \"{employee_id}\""), "{p}");

    let err = load_err(&example_with("employee_id = \"{employee_id}\"", ""));
    assert!(
        only_problem(&err).message.contains("add `employee_id = \"{employee_id}\"` to [profile.attributes]"),
        "{err}"
    );
}

#[test]
fn manager_settings_need_the_manager_column() {
    let err = load_err(&example_with("manager = \"manager_login\"     # the manager's login", ""));
    let keys: Vec<&str> = err.problems().iter().map(|p| p.key.as_str()).collect();
    assert_eq!(keys, ["managers.user_manager", "managers.profile_attribute"]);
    assert!(err.to_string().contains("needs `columns.manager`"), "{err}");
}

#[test]
fn the_manager_attribute_cannot_also_take_a_template() {
    let err = load_err(&example_with("login = \"{login}\"", "login = \"{login}\"\nmanager = \"{manager_login}\""));
    let p = only_problem(&err);
    assert_eq!((p.key.as_str(), p.kind), ("managers.profile_attribute", ProblemKind::Inconsistent));
}

#[test]
fn duplicate_status_keys_differing_in_case_are_rejected() {
    let err = load_err(&example_with("Leave = \"Active\"", "Leave = \"Active\"\nLEAVE = \"Active\""));
    let p = only_problem(&err);
    assert_eq!(p.key, "user.status_map");
    assert!(p.message.contains("listed twice"), "{p}");
}

// ---------------------------------------------------------------- lookups and warnings

#[test]
fn status_maps_are_case_insensitive() {
    let config = example();
    assert_eq!(config.user_status_for("Leave"), Some(UserStatus::Active));
    assert_eq!(config.user_status_for("  lEaVe "), Some(UserStatus::Active));
    assert_eq!(config.user_status_for("TERMINATED"), Some(UserStatus::Disabled));
    assert_eq!(config.profile_status_for("leave"), Some(ProfileStatus::OnLeave));
    assert_eq!(config.profile_status_for("disabled"), Some(ProfileStatus::Inactive));
}

#[test]
fn an_unmapped_hr_status_has_no_nerm_status() {
    let config = example();
    assert_eq!(config.user_status_for("Retired"), None);
    assert_eq!(config.profile_status_for(""), None);
}

#[test]
fn the_user_role_strategy_yields_a_warning() {
    let config = example_with("strategy = \"group_strings\"", "strategy = \"user_role\"").parse_ok();
    let w = only_warning(config.warnings());
    assert_eq!(w.key, "roles.strategy");
    assert!(w.message.contains("IdP groups overwrite those roles at every login and at the daily refresh"), "{w}");
    // and the warning survives resolution, for the report
    let resolved = config.resolve(&demo_catalog()).unwrap();
    assert_eq!(resolved.warnings(), config.warnings());
}

#[test]
fn allowing_mass_disable_yields_a_warning() {
    let config = example_with("allow_mass_disable = false", "allow_mass_disable = true").parse_ok();
    assert_eq!(only_warning(config.warnings()).key, "sync.allow_mass_disable");
}

#[test]
fn a_status_mapped_for_users_only_yields_a_warning() {
    let config = example_with("Leave = \"Active\"", "Leave = \"Active\"\nRetired = \"Disabled\"").parse_ok();
    let w = only_warning(config.warnings());
    assert_eq!(w.key, "profile.status_map");
    assert!(w.message.contains("`retired`"), "{w}");
}

#[test]
fn the_roles_cell_is_split_trimmed_and_blanks_skipped() {
    let config = example();
    let roles: Vec<&str> = config.split_roles(" Sponsor ;; Manager;").collect();
    assert_eq!(roles, ["Sponsor", "Manager"]);
    assert_eq!(config.split_roles("").count(), 0);
}

#[test]
fn column_uses_list_every_column_with_its_key() {
    let config = example();
    let uses = config.column_uses();
    assert!(uses.contains(&ColumnUse {
        field: "profile.attributes.job_title".into(),
        column: "title",
        placeholder: true
    }));
    assert!(uses.contains(&ColumnUse { field: "columns.roles".into(), column: "nerm_roles", placeholder: false }));
}

// ---------------------------------------------------------------- check_columns

#[test]
fn headers_match_case_and_whitespace_insensitively() {
    let config = example();
    let messy: Vec<String> = REFERENCE_HEADER.iter().map(|h| format!("  {}  ", h.to_uppercase())).collect();
    let messy: Vec<&str> = messy.iter().map(String::as_str).collect();
    config.check_columns(&messy).unwrap();

    let spaced = MappingConfig::from_toml_str(&MINIMAL.replace("{first_name}", "{First  Name}")).unwrap();
    spaced.check_columns(&["employee_id", "login", "status", " first\tname ", "last_name", "email"]).unwrap();
}

#[test]
fn a_placeholder_missing_from_the_csv_header_is_reported() {
    // Without `csv.headers`, placeholders are free-form until the header is known.
    let config = MappingConfig::from_toml_str(&MINIMAL.replace("{last_name}", "{lastname}")).unwrap();
    let err =
        config.check_columns(&["employee_id", "login", "status", "first_name", "last_name", "email"]).unwrap_err();
    let p = only_problem(&err);
    assert_eq!((p.key.as_str(), p.kind), ("user.name", ProblemKind::UnknownPlaceholder));
    assert!(
        p.message
            .starts_with("placeholder `{lastname}` is not a column of the CSV header (header: `email`, `employee_id`,"),
        "{p}"
    );
}

#[test]
fn a_fixed_column_missing_from_the_csv_header_is_reported() {
    let err = example()
        .check_columns(&REFERENCE_HEADER[..9]) // no nerm_roles
        .unwrap_err();
    let p = only_problem(&err);
    assert_eq!((p.key.as_str(), p.kind), ("columns.roles", ProblemKind::UnknownColumn));
}

// ---------------------------------------------------------------- resolve

#[test]
fn an_unknown_attribute_is_reported_with_the_known_ones() {
    let config = example_with("department = \"{department}\"", "dept = \"{department}\"").parse_ok();
    let err = resolve_err(&config, &demo_catalog());
    let p = only_problem(&err);
    assert_eq!((p.key.as_str(), p.kind), ("profile.attributes.dept", ProblemKind::UnknownAttribute));
    assert_eq!(
        p.message,
        "attribute `dept` does not exist in NERM; known attribute uids: `department`, `email`, `employee_id`, `first_name`, `job_title`, `last_name`, `login`, `manager`, `sponsor`"
    );
}

#[test]
fn an_unknown_attribute_with_a_near_match_gets_a_hint() {
    let config = example_with("job_title = \"{title}\"", "Job_Title = \"{title}\"").parse_ok();
    let err = resolve_err(&config, &demo_catalog());
    assert!(only_problem(&err).message.contains("(did you mean `job_title`, labelled \"Job Title\"?)"), "{err}");
}

#[test]
fn a_long_list_of_known_attributes_is_truncated() {
    let mut catalog = demo_catalog();
    for i in 0..30 {
        catalog.attributes.push(CatalogAttribute {
            id: format!("x-{i}"),
            uid: format!("zz_extra_{i:02}"),
            label: format!("Extra {i}"),
            data_type: "text field".into(),
            profile_type_id: None,
        });
    }
    let config = example_with("department = \"{department}\"", "dept = \"{department}\"").parse_ok();
    let err = resolve_err(&config, &catalog);
    assert!(only_problem(&err).message.ends_with(", … (19 more)"), "{err}");
}

#[test]
fn an_unknown_role_is_reported_with_the_known_role_names() {
    let config = example_with("defaults = [\"Employee\"]", "defaults = [\"Staff\"]").parse_ok();
    let err = resolve_err(&config, &demo_catalog());
    let p = only_problem(&err);
    assert_eq!((p.key.as_str(), p.kind), ("roles.defaults", ProblemKind::UnknownRole));
    assert_eq!(
        p.message,
        "role `Staff` does not exist in NERM; known role names: `Administrator`, `Employee`, `Manager`, `Sponsor`, `Vendor Portal`"
    );
}

#[test]
fn an_unknown_profile_type_lists_the_known_types() {
    let config = example_with("type = \"employee\"", "type = \"people\"").parse_ok();
    let err = resolve_err(&config, &demo_catalog());
    let p = only_problem(&err);
    assert_eq!((p.key.as_str(), p.kind), ("profile.type", ProblemKind::UnknownProfileType));
    assert!(p.message.ends_with("known types (uid (name)): `contractor (Contractor)`, `employee (Employee)`"), "{p}");
}

#[test]
fn the_profile_type_can_be_given_by_name() {
    let config = example_with("type = \"employee\"", "type = \"EMPLOYEE\"").parse_ok();
    let resolved = config.resolve(&demo_catalog()).unwrap();
    assert_eq!(resolved.profile_type().uid, "employee");
}

#[test]
fn a_manager_attribute_that_is_not_a_profile_select_is_rejected() {
    let config = example_with("profile_attribute = \"manager\"", "profile_attribute = \"department\"")
        .replacen("department = \"{department}\"", "", 1)
        .parse_ok();
    let err = resolve_err(&config, &demo_catalog());
    let p = only_problem(&err);
    assert_eq!((p.key.as_str(), p.kind), ("managers.profile_attribute", ProblemKind::AttributeType));
    assert_eq!(
        p.message,
        "attribute `department` is a `text field` attribute; the manager link needs a `profile select` attribute"
    );
}

#[test]
fn a_manager_attribute_selecting_another_profile_type_is_rejected() {
    let mut catalog = demo_catalog();
    catalog.attributes[7].profile_type_id = Some(CONTRACTOR_TYPE_ID.into());
    let err = resolve_err(&example(), &catalog);
    assert_eq!(
        only_problem(&err).message,
        "attribute `manager` selects `Contractor` profiles, but managers are `Employee` profiles"
    );
}

#[test]
fn a_select_attribute_cannot_be_filled_from_a_template() {
    let config = example_with("profile_attribute = \"manager\"", "")
        .replacen("login = \"{login}\"", "login = \"{login}\"\nmanager = \"{manager_login}\"", 1)
        .parse_ok();
    let err = resolve_err(&config, &demo_catalog());
    let p = only_problem(&err);
    assert_eq!((p.key.as_str(), p.kind), ("profile.attributes.manager", ProblemKind::AttributeType));
    assert!(p.message.contains("use `managers.profile_attribute`"), "{p}");
}

#[test]
fn role_lookups_are_case_insensitive_and_expose_ids_and_groups() {
    let resolved = example().resolve(&demo_catalog()).unwrap();
    let sponsor = resolved.role("  sponsor ").unwrap();
    assert_eq!(sponsor.id, "r-1");
    assert_eq!(sponsor.groups, ["Sponsors"]);
    assert_eq!(resolved.lookup_role("MANAGER").unwrap().groups, ["Managers"]);
    assert_eq!(resolved.role("Auditor"), None);
    assert_eq!(resolved.lookup_role("Auditor"), Err(RoleLookupError::Unknown("Auditor".into())));
}

#[test]
fn a_role_without_groups_cannot_be_granted_with_group_strings() {
    let mut catalog = demo_catalog();
    catalog.roles[3].groups.clear();
    let err = resolve_err(&example(), &catalog);
    let p = only_problem(&err);
    assert_eq!((p.key.as_str(), p.kind), ("roles.defaults", ProblemKind::UnusableRole));
    assert_eq!(p.message, "role `Employee` has no directory groups, so the `group_strings` strategy cannot grant it");
    // ... but it can be assigned directly.
    let direct = example_with("strategy = \"group_strings\"", "strategy = \"user_role\"").parse_ok();
    direct.resolve(&catalog).unwrap();
}

#[test]
fn a_portal_role_cannot_be_given_to_lifecycle_users() {
    let resolved = example().resolve(&demo_catalog()).unwrap();
    assert_eq!(
        resolved.lookup_role("vendor portal").unwrap_err().to_string(),
        "role `Vendor Portal` is a NeaccessRole and cannot be given to a NeprofileUser"
    );
    let config = example_with("defaults = [\"Employee\"]", "defaults = [\"Vendor Portal\"]").parse_ok();
    let err = resolve_err(&config, &demo_catalog());
    assert_eq!(only_problem(&err).kind, ProblemKind::UnusableRole);
}

#[test]
fn roles_whose_names_differ_only_in_case_are_ambiguous() {
    let mut catalog = demo_catalog();
    let mut twin = catalog.roles[0].clone();
    twin.id = "r-9".into();
    twin.name = "SPONSOR".into();
    catalog.roles.push(twin);
    let resolved = example().resolve(&catalog).unwrap();
    assert_eq!(resolved.role("Sponsor"), None);
    assert_eq!(resolved.lookup_role("sponsor"), Err(RoleLookupError::Ambiguous("sponsor".into())));
    assert_eq!(only_warning(resolved.warnings()).key, "roles");
}

#[test]
fn all_catalog_problems_are_reported_at_once() {
    let config = example_with("defaults = [\"Employee\"]", "defaults = [\"Staff\"]");
    let config = config.replacen("department = \"{department}\"", "dept = \"{department}\"", 1);
    let err = resolve_err(&config.parse_ok(), &demo_catalog());
    let kinds: Vec<ProblemKind> = err.problems().iter().map(|p| p.kind).collect();
    assert_eq!(kinds, [ProblemKind::UnknownAttribute, ProblemKind::UnknownRole]);
}

#[test]
fn the_catalog_can_be_read_from_json() {
    let json = serde_json::to_string(&demo_catalog()).unwrap();
    let back: NermCatalog = serde_json::from_str(&json).unwrap();
    assert_eq!(back, demo_catalog());
    let role: CatalogRole =
        serde_json::from_str(r#"{"id":"1","uid":"s","name":"Sponsor","groups":["Sponsors"]}"#).unwrap();
    assert_eq!(role.role_type, None);
}

// ---------------------------------------------------------------- helpers

/// 1-based line of the first occurrence of `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    let at = text.find(needle).expect("needle present");
    text[..at].matches('\n').count() + 1
}

fn only_warning(warnings: &[ConfigWarning]) -> &ConfigWarning {
    match warnings {
        [one] => one,
        other => panic!("expected exactly one warning, got {other:?}"),
    }
}

trait ParseOk {
    fn parse_ok(&self) -> MappingConfig;
}

impl ParseOk for String {
    fn parse_ok(&self) -> MappingConfig {
        MappingConfig::from_toml_str(self).unwrap_or_else(|e| panic!("{e}"))
    }
}
