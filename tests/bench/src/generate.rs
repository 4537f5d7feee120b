//! The HR exports the benchmarks read: the reference shape
//! (`employee_id,login,email,first_name,last_name,title,department,manager_login,status,nerm_roles`),
//! deterministic for a seed, written fast enough that a million rows take about a second.
//!
//! Like real exports (and `infra/local/gen_hr.py`): non-ASCII names, titles with quoted commas
//! and quotes, managers anywhere in the file (later rows too, sometimes in another letter
//! case), a few statuses written in lower case, roles such as `Sponsor;Manager`. Every row is
//! valid, so the numbers are for the common path.

use std::io::{self, Write};

pub const HEADER: &str =
    "employee_id,login,email,first_name,last_name,title,department,manager_login,status,nerm_roles";

const FIRST: [&str; 16] = [
    "Ada", "José", "Zoë", "Łukasz", "Søren", "Aiko", "Björn", "Chloé", "Dmitri", "Grace", "Fatima", "Siobhán",
    "Nguyễn", "Émile", "Priya", "Mateo",
];
const LAST: [&str; 16] = [
    "Lovelace",
    "García",
    "Müller",
    "Nguyễn",
    "O'Brien",
    "Kowalski",
    "Østergaard",
    "Smith",
    "Dubois",
    "Tanaka",
    "Hopper",
    "Černý",
    "Rossi",
    "Sato",
    "Berg",
    "Díaz",
];
const TITLES: [&str; 8] = [
    "Engineer",
    "Senior Engineer, Platform",
    "Head of \"Ops\", EMEA",
    "Développeuse",
    "Analyst",
    "VP, Sales, Nordics",
    "Director, R&D",
    "Recruiter",
];
const DEPARTMENTS: [&str; 6] = ["Engineering", "Sales", "R&D", "Finance", "HR", "Operations"];
const ROLES: [&str; 8] = ["", "", "", "", "Sponsor", "Manager", "Sponsor;Manager", " manager ; SPONSOR "];

/// splitmix64: tiny, fast and the same on every platform and crate version.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// How the file differs from the base file of the same seed.
#[derive(Debug, Clone, Copy, Default)]
pub struct Variant {
    /// Every row `i` with `i % n == n / 2` gets ` (acting)` appended to its title: a changed
    /// user title and profile job title for 1/n of the employees.
    pub change_every: Option<usize>,
}

/// The login of employee `i` (every 7th written in mixed case, as some HR systems do).
pub fn login(i: usize) -> String {
    if i % 7 == 3 { format!("Emp{i:07}@Example.com") } else { format!("emp{i:07}@example.com") }
}

fn write_field(out: &mut impl Write, value: &str) -> io::Result<()> {
    if value.contains([',', '"', '\n', '\r']) || value.starts_with(' ') || value.ends_with(' ') {
        out.write_all(b"\"")?;
        out.write_all(value.replace('"', "\"\"").as_bytes())?;
        out.write_all(b"\"")
    } else {
        out.write_all(value.as_bytes())
    }
}

/// Writes `rows` employees (header first) to `out`.
pub fn write_hr(out: impl Write, rows: usize, seed: u64, variant: Variant) -> io::Result<()> {
    let mut out = io::BufWriter::with_capacity(1 << 16, out);
    let mut rng = Rng(seed);
    writeln!(out, "{HEADER}")?;
    let mut title = String::new();
    for i in 0..rows {
        let first = FIRST[rng.below(FIRST.len())];
        let last = LAST[rng.below(LAST.len())];
        title.clear();
        title.push_str(TITLES[rng.below(TITLES.len())]);
        if let Some(n) = variant.change_every
            && i % n == n / 2
        {
            title.push_str(" (acting)");
        }
        let department = DEPARTMENTS[rng.below(DEPARTMENTS.len())];
        // Managers anywhere in the file; about 1 in 50 employees has none.
        let manager = match rng.below(50) {
            _ if i == 0 || rows < 2 => String::new(),
            0 => String::new(),
            dice => {
                let mut m = rng.below(rows);
                if m == i {
                    m = (i + 1) % rows;
                }
                if dice == 1 { login(m).to_uppercase() } else { login(m) }
            }
        };
        let status = match rng.below(100) {
            0..=4 => "Leave",
            5..=7 => "Disabled",
            8..=9 => "Terminated",
            10..=14 => "active",
            _ => "Active",
        };
        let roles = ROLES[rng.below(ROLES.len())];
        write!(out, "E{i:07},{},emp{i:07}@example.com,{first},", login(i))?;
        write_field(&mut out, last)?;
        out.write_all(b",")?;
        write_field(&mut out, &title)?;
        write!(out, ",{department},{manager},{status},")?;
        write_field(&mut out, roles)?;
        out.write_all(b"\n")?;
    }
    out.flush()
}

/// [`write_hr`] into memory.
pub fn hr_string(rows: usize, seed: u64, variant: Variant) -> String {
    let mut buf = Vec::with_capacity(rows * 140 + 128);
    write_hr(&mut buf, rows, seed, variant).expect("writing to memory cannot fail");
    String::from_utf8(buf).expect("the generator writes UTF-8")
}
