//! What the property and hostile-input tests share: the example mapping config bound to the
//! demo tenant, the reference header, the line-numbering rule, and inputs made on the fly.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::io::{self, Read};

use shared::config::{CatalogAttribute, CatalogProfileType, CatalogRole, MappingConfig, NermCatalog, RoleType};

pub const EXAMPLE_CONFIG: &str = include_str!("../../../infra/config/example.toml");

/// The reference HR export's columns (`infra/config/example.toml`).
pub const REFERENCE_HEADER: [&str; 10] = [
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

/// The example mapping config as shipped.
pub fn example_config() -> MappingConfig {
    MappingConfig::from_toml_str(EXAMPLE_CONFIG).expect("the example config loads")
}

/// The demo tenant's catalog (README "Demo tenant"), enough to resolve the example config.
pub fn demo_catalog() -> NermCatalog {
    let employee = "7b0e6a57-0000-4000-8000-000000000001";
    let attribute = |id: &str, uid: &str, data_type: &str| CatalogAttribute {
        id: id.into(),
        uid: uid.into(),
        label: uid.into(),
        data_type: data_type.into(),
        profile_type_id: (data_type == "profile select").then(|| employee.to_string()),
    };
    let role = |id: &str, name: &str, group: &str, role_type: RoleType| CatalogRole {
        id: id.into(),
        uid: name.to_lowercase().replace(' ', "_"),
        name: name.into(),
        groups: vec![group.into()],
        role_type: Some(role_type),
    };
    NermCatalog {
        profile_types: vec![CatalogProfileType {
            id: employee.into(),
            uid: "employee".into(),
            name: "Employee".into(),
        }],
        attributes: ["employee_id", "first_name", "last_name", "email", "job_title", "department", "login"]
            .iter()
            .enumerate()
            .map(|(i, uid)| attribute(&format!("a-{i}"), uid, "text field"))
            .chain([attribute("a-8", "manager", "profile select")])
            .collect(),
        roles: vec![
            role("r-1", "Sponsor", "Sponsors", RoleType::NeprofileRole),
            role("r-2", "Manager", "Managers", RoleType::NeprofileRole),
            role("r-3", "Employee", "Employees", RoleType::NeprofileRole),
            role("r-4", "Vendor Portal", "Vendors", RoleType::NeaccessRole),
        ],
    }
}

/// The physical line a byte offset is on: 1 + the line breaks before it, where CRLF, a lone LF
/// and a lone CR each end a line (Excel for Mac still writes CR-only files).
pub fn line_at(bytes: &[u8]) -> u64 {
    let mut line = 1;
    let mut prev_cr = false;
    for &b in bytes {
        if b == b'\r' || (b == b'\n' && !prev_cr) {
            line += 1;
        }
        prev_cr = b == b'\r';
    }
    line
}

/// An input made on the fly from pieces, each repeated some number of times: a 50 MB file
/// never has to sit in the test's memory.
pub struct Pieces {
    pieces: Vec<(Vec<u8>, u64)>,
    index: usize,
    /// Bytes of the current piece (all its repeats) already produced.
    done: u64,
}

impl Pieces {
    pub fn new() -> Pieces {
        Pieces { pieces: Vec::new(), index: 0, done: 0 }
    }

    /// Appends `bytes` once.
    pub fn then(self, bytes: impl AsRef<[u8]>) -> Pieces {
        self.repeat(bytes, 1)
    }

    /// Appends `bytes` `times` times.
    pub fn repeat(mut self, bytes: impl AsRef<[u8]>, times: u64) -> Pieces {
        self.pieces.push((bytes.as_ref().to_vec(), times));
        self
    }

    /// Appends `total` bytes of `byte` (made from a 64 KiB block).
    pub fn fill(self, byte: u8, total: u64) -> Pieces {
        const BLOCK: u64 = 64 * 1024;
        self.repeat(vec![byte; BLOCK as usize], total / BLOCK).repeat([byte], total % BLOCK)
    }

    /// Total length in bytes.
    pub fn len(&self) -> u64 {
        self.pieces.iter().map(|(b, n)| b.len() as u64 * n).sum()
    }
}

impl Read for Pieces {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut n = 0;
        while n < buf.len() && self.index < self.pieces.len() {
            let (bytes, times) = &self.pieces[self.index];
            if self.done >= bytes.len() as u64 * times {
                self.index += 1;
                self.done = 0;
                continue;
            }
            let at = (self.done % bytes.len() as u64) as usize;
            let take = (bytes.len() - at).min(buf.len() - n);
            buf[n..n + take].copy_from_slice(&bytes[at..at + take]);
            n += take;
            self.done += take as u64;
        }
        Ok(n)
    }
}

/// Deterministic pseudo-random bytes (xorshift64*), so a failure can be replayed.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.max(1);
    (0..len)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
        })
        .collect()
}
