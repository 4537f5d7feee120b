//! Scenario 2: planning — diff N employees against an N-user / N-profile snapshot with about 1%
//! of the employees changed.
//!
//! The parent builds the NERM state a first import of the file would leave behind (by planning
//! the file against an empty snapshot and turning each create into the record NERM would hold),
//! changes 1% of it, and writes it as JSON (what the paged reads return). Each measured run is
//! a child process that loads that JSON, then times the engine's planning stage the way
//! `engine::run::plan_file` runs it: the first pass (`index_file`), the snapshot indexes
//! (`Snapshot::from_parts`), and the second pass (`EmployeeReader` + `Planner::plan_row`,
//! collecting plans); then a read-only second pass, so the diff's own cost is the difference.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::Path;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use shared::engine::{Employee, EmployeeReader, Op, Planner, ReadContext, RowPlan, Snapshot, index_file};
use shared::login::LoginKey;
use shared::nerm::model::{Profile, User, UserManager, UserProfile};

use crate::util::{self, Measurement, fmt_num, mib, proc_status_kb, secs};

/// A NERM-like id (36 characters, like the UUIDs NERM hands out).
fn id(kind: u32, n: usize) -> String {
    format!("{kind:08x}-0000-4000-8000-{n:012x}")
}

/// The NERM state after a first import of `csv`, with 2 employees in `change_every` changed:
/// one in its user title, one in its profile department.
fn synthesize(csv: &Path, change_every: usize) -> Result<State, String> {
    let resolved = util::resolved_config();
    let ctx = ReadContext::new(&resolved);
    let open = || File::open(csv).map_err(|e| e.to_string());
    let file = index_file(open()?, &ctx).map_err(|e| e.to_string())?;
    let empty = Snapshot::default();
    let mut planner = Planner::new(&resolved, &empty, &file);
    let mut reader = EmployeeReader::new(open()?, &ctx).map_err(|e| e.to_string())?;
    let manager_attr = resolved.manager_attribute().map(|a| a.uid.clone()).ok_or("no manager attribute")?;
    let mut s = State::default();
    let mut user_of_login: HashMap<LoginKey, String> = HashMap::new();
    let mut profile_of_key: HashMap<String, usize> = HashMap::new();
    let mut deferred_user_managers: Vec<(String, String)> = Vec::new();
    let mut deferred_profile_managers: Vec<(usize, String)> = Vec::new();
    let mut n = 0usize;
    let mut employee = Employee::default();
    while let Some(item) = reader.read_into(&mut employee).map_err(|e| e.to_string())? {
        let plan = match planner.plan_row(item.map(|()| &employee)) {
            RowPlan::Change(p) => p,
            other => return Err(format!("planning against an empty snapshot gave {other:?}")),
        };
        let (user_id, profile_id) = (id(1, n), id(2, n));
        for op in plan.ops {
            match op {
                Op::CreateUser { user } => {
                    user_of_login.insert(LoginKey::of(&user.login), user_id.clone());
                    s.users.push(User {
                        id: user_id.clone(),
                        uid: String::new(),
                        name: user.name,
                        email: user.email,
                        kind: user.kind,
                        title: user.title,
                        status: user.status,
                        login: user.login,
                        locale: user.locale,
                        group_strings: user.group_strings,
                        sailpoint_identity_id: user.sailpoint_identity_id,
                    });
                }
                Op::CreateProfile { profile } => {
                    profile_of_key.insert(plan.key.clone(), s.profiles.len());
                    s.profiles.push(Profile {
                        id: profile_id.clone(),
                        name: profile.name.unwrap_or_default(),
                        profile_type_id: profile.profile_type_id,
                        status: profile.status,
                        attributes: profile.attributes,
                        updated_at: None,
                    });
                }
                Op::LinkSelf { relationship } => s.user_profiles.push(UserProfile {
                    id: id(3, n),
                    user_id: user_id.clone(),
                    profile_id: profile_id.clone(),
                    ne_attribute_id: None,
                    relationship_type: relationship,
                }),
                Op::SetUserManager { manager_login, .. } => {
                    deferred_user_managers.push((user_id.clone(), manager_login));
                }
                Op::SetProfileManager { manager_key, .. } => {
                    deferred_profile_managers.push((s.profiles.len() - 1, manager_key));
                }
                other => return Err(format!("unexpected first-import op {other:?}")),
            }
        }
        n += 1;
    }
    for (i, (user_id, manager_login)) in deferred_user_managers.into_iter().enumerate() {
        let manager_id = user_of_login.get(&LoginKey::of(&manager_login)).ok_or("manager user missing")?.clone();
        s.user_managers.push(UserManager { id: id(4, i), user_id, manager_id });
    }
    for (profile, manager_key) in deferred_profile_managers {
        // GET shows a profile select attribute as the picked profile's name (docs/nerm-api.md, "Records and their values").
        let name = s.profiles[*profile_of_key.get(&manager_key).ok_or("manager profile missing")?].name.clone();
        s.profiles[profile].attributes.insert(manager_attr.clone(), name);
    }
    // The drift HR made since the last import.
    for (i, u) in s.users.iter_mut().enumerate() {
        if i % change_every == 0 {
            u.title = Some(format!("{} (old)", u.title.as_deref().unwrap_or_default()));
        }
    }
    for (i, p) in s.profiles.iter_mut().enumerate() {
        if i % change_every == change_every / 2
            && let Some(d) = p.attributes.get_mut("department")
        {
            d.push_str(" (old)");
        }
    }
    Ok(s)
}

#[derive(Default, Serialize, Deserialize)]
struct State {
    users: Vec<User>,
    profiles: Vec<Profile>,
    user_profiles: Vec<UserProfile>,
    user_managers: Vec<UserManager>,
}

const PARTS: [&str; 4] = ["users", "profiles", "user_profiles", "user_managers"];

fn save_state(dir: &Path, s: &State) -> Result<(), String> {
    let write = |name: &str, value: &dyn erased::Json| -> Result<(), String> {
        let f = File::create(dir.join(format!("{name}.json"))).map_err(|e| e.to_string())?;
        value.write(BufWriter::new(f))
    };
    write(PARTS[0], &s.users)?;
    write(PARTS[1], &s.profiles)?;
    write(PARTS[2], &s.user_profiles)?;
    write(PARTS[3], &s.user_managers)
}

mod erased {
    /// Object-safe "write as JSON", so `save_state` can take each part alike.
    pub trait Json {
        fn write(&self, out: std::io::BufWriter<std::fs::File>) -> Result<(), String>;
    }

    impl<T: serde::Serialize> Json for T {
        fn write(&self, out: std::io::BufWriter<std::fs::File>) -> Result<(), String> {
            serde_json::to_writer(out, self).map_err(|e| e.to_string())
        }
    }
}

fn load<T: for<'de> Deserialize<'de>>(dir: &Path, name: &str) -> Result<T, String> {
    let f = File::open(dir.join(format!("{name}.json"))).map_err(|e| e.to_string())?;
    serde_json::from_reader(BufReader::with_capacity(1 << 16, f)).map_err(|e| e.to_string())
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ChildResult {
    pub rss_loaded_kb: u64,
    pub vm_hwm_kb: u64,
    pub index_file_secs: f64,
    pub from_parts_secs: f64,
    pub plan_pass_secs: f64,
    pub read_pass_secs: f64,
    pub unchanged: u64,
    pub changed: u64,
    pub rejected: u64,
    pub ops: u64,
}

/// One measured run (the child side).
pub fn child(dir: &Path, csv: &Path) -> Result<ChildResult, String> {
    let users: Vec<User> = load(dir, PARTS[0])?;
    let profiles: Vec<Profile> = load(dir, PARTS[1])?;
    let user_profiles: Vec<UserProfile> = load(dir, PARTS[2])?;
    let user_managers: Vec<UserManager> = load(dir, PARTS[3])?;
    let resolved = util::resolved_config();
    let ctx = ReadContext::new(&resolved);
    let rss_loaded_kb = proc_status_kb("VmRSS");
    let open = || File::open(csv).map_err(|e| e.to_string());

    let t = Instant::now();
    let file = index_file(open()?, &ctx).map_err(|e| e.to_string())?;
    let index_file_secs = secs(t);

    let t = Instant::now();
    let key_uid = resolved.key_attribute().uid.clone();
    let snap = Snapshot::from_parts(users, profiles, Vec::new(), user_profiles, user_managers, &key_uid);
    let from_parts_secs = secs(t);

    let t = Instant::now();
    let mut planner = Planner::new(&resolved, &snap, &file);
    let mut reader =
        EmployeeReader::new(open()?, &ctx).map_err(|e| e.to_string())?.piped().second_pass(&file.logins, &ctx);
    let (mut unchanged, mut rejected) = (0u64, 0u64);
    let mut plans = Vec::new();
    let mut settled = Vec::new();
    let mut employee = Employee::default();
    while let Some(item) = reader.read_into(&mut employee).map_err(|e| e.to_string())? {
        match planner.plan_row(item.map(|()| &employee)) {
            RowPlan::Unchanged { line, login, key, .. } => {
                unchanged += 1;
                settled.push((line, login, key));
            }
            RowPlan::Rejected(r) => {
                rejected += 1;
                settled.push((r.line, r.login, r.key));
            }
            RowPlan::Change(p) => plans.push(p),
        }
    }
    plans.extend(planner.leavers().map_err(|e| e.to_string())?);
    let plan_pass_secs = secs(t);
    let ops = plans.iter().map(|p| p.ops.len() as u64).sum();
    drop(planner);

    let t = Instant::now();
    let mut reader = EmployeeReader::new(open()?, &ctx).map_err(|e| e.to_string())?;
    while let Some(item) = reader.read_into(&mut employee).map_err(|e| e.to_string())? {
        std::hint::black_box(item.map(|()| &employee).ok());
    }
    let read_pass_secs = secs(t);
    std::hint::black_box((&settled, &snap));
    Ok(ChildResult {
        rss_loaded_kb,
        vm_hwm_kb: proc_status_kb("VmHWM"),
        index_file_secs,
        from_parts_secs,
        plan_pass_secs,
        read_pass_secs,
        unchanged,
        changed: plans.len() as u64,
        rejected,
        ops,
    })
}

pub fn run(work: &Path, results: &Path, employees: usize, runs: usize) -> Result<(), String> {
    let dir = work.join("plan");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let csv = dir.join("hr.csv");
    let t = Instant::now();
    crate::generate::write_hr(File::create(&csv).map_err(|e| e.to_string())?, employees, 2, Default::default())
        .map_err(|e| e.to_string())?;
    let state = synthesize(&csv, 200)?; // 1% of the employees
    let counts = (state.users.len(), state.profiles.len(), state.user_profiles.len(), state.user_managers.len());
    save_state(&dir, &state)?;
    drop(state);
    println!(
        "scenario 2: {} employees; NERM holds {} users, {} profiles, {} owner links, {} manager links (prepared in {:.1}s)",
        fmt_num(employees as f64),
        fmt_num(counts.0 as f64),
        fmt_num(counts.1 as f64),
        fmt_num(counts.2 as f64),
        fmt_num(counts.3 as f64),
        secs(t)
    );
    let (dir_s, csv_s) = (dir.to_str().ok_or("non-UTF-8 path")?, csv.to_str().ok_or("non-UTF-8 path")?);
    let mut got: Vec<ChildResult> = Vec::new();
    for _ in 0..runs {
        got.push(util::run_child(&["plan-child", "--dir", dir_s, "--csv", csv_s])?);
    }
    let first = &got[0];
    if first.rejected > 0 || first.unchanged + first.changed != employees as u64 {
        return Err(format!("planning gave {first:?} for {employees} employees"));
    }
    let ms = |f: fn(&ChildResult) -> f64| -> Vec<f64> { got.iter().map(|r| f(r) * 1000.0).collect() };
    let scenario = format!(
        "2. planning, {} employees vs {} users / {} profiles, ~1% changed",
        util::fmt_num(employees as f64),
        util::fmt_num(counts.0 as f64),
        util::fmt_num(counts.1 as f64)
    );
    let s = scenario.as_str();
    let diff: Vec<f64> = got.iter().map(|r| (r.plan_pass_secs - r.read_pass_secs) * 1000.0).collect();
    let total: Vec<f64> =
        got.iter().map(|r| (r.index_file_secs + r.from_parts_secs + r.plan_pass_secs) * 1000.0).collect();
    let m = vec![
        Measurement::over(s, "first pass (index_file)", "ms", &ms(|r| r.index_file_secs)),
        Measurement::over(s, "snapshot indexes (Snapshot::from_parts)", "ms", &ms(|r| r.from_parts_secs)),
        Measurement::over(s, "second pass: read + plan every row (+ leavers)", "ms", &ms(|r| r.plan_pass_secs)),
        Measurement::over(s, "  of which the diff (plan pass − read-only pass)", "ms", &diff),
        Measurement::over(s, "planning stage total (the three above)", "ms", &total),
        Measurement::over(
            s,
            "diff throughput",
            "rows/s",
            &diff.iter().map(|d| employees as f64 / (d / 1000.0)).collect::<Vec<_>>(),
        ),
        Measurement::one(s, "employees to change (planned)", "rows", first.changed as f64).note(format!(
            "{} unchanged, {} operations",
            fmt_num(first.unchanged as f64),
            fmt_num(first.ops as f64)
        )),
        Measurement::over(
            s,
            "RSS with NERM state loaded, before planning",
            "MiB",
            &got.iter().map(|r| mib(r.rss_loaded_kb)).collect::<Vec<_>>(),
        ),
        Measurement::over(
            s,
            "peak RSS (whole process)",
            "MiB",
            &got.iter().map(|r| mib(r.vm_hwm_kb)).collect::<Vec<_>>(),
        ),
    ];
    util::save(results, "2-plan", &m)?;
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}
