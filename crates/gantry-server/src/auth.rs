//! Who may do what: bearer tokens carry a role; each route needs a permission.

pub use gantry_store::Role;

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// Read GPUs, queues, metrics, the strategy.
    ReadCluster,
    /// Read workloads (a submitter: only its own; a viewer: all, read only).
    ReadWorkloads,
    /// Submit workloads.
    Submit,
    /// Cancel workloads (a submitter: only its own).
    Cancel,
    /// Change the active strategy or queues.
    Operate,
    /// Manage tokens.
    Administer,
}

/// Whether `role` holds `permission`.
pub fn allows(role: Role, permission: Permission) -> bool {
    use Permission::*;
    match role {
        Role::Admin => true,
        Role::Operator => permission != Administer,
        Role::Submitter => matches!(permission, ReadCluster | ReadWorkloads | Submit | Cancel),
        Role::Viewer => matches!(permission, ReadCluster | ReadWorkloads),
    }
}

/// The caller of a request: a token's name and role (or the local user when auth is off).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Who (the token's name; `local` with auth off).
    pub name: String,
    /// Their role.
    pub role: Role,
}

impl Principal {
    /// The caller when the server runs with `--no-auth` (loopback only): an admin named `local`.
    pub fn local() -> Self {
        Principal {
            name: "local".into(),
            role: Role::Admin,
        }
    }

    /// Whether this caller may see or cancel a workload owned by `owner`.
    pub fn owns_or_oversees(&self, owner: &str) -> bool {
        self.role != Role::Submitter || self.name == owner
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_matrix() {
        use Permission::*;
        let all = [
            ReadCluster,
            ReadWorkloads,
            Submit,
            Cancel,
            Operate,
            Administer,
        ];
        let granted = |r: Role| all.iter().filter(|&&p| allows(r, p)).count();
        assert_eq!(granted(Role::Admin), 6);
        assert_eq!(granted(Role::Operator), 5);
        assert!(!allows(Role::Operator, Administer));
        assert_eq!(granted(Role::Submitter), 4);
        assert!(!allows(Role::Submitter, Operate));
        assert_eq!(granted(Role::Viewer), 2);
        assert!(!allows(Role::Viewer, Submit));
    }

    #[test]
    fn submitters_see_only_their_own() {
        let alice = Principal {
            name: "alice".into(),
            role: Role::Submitter,
        };
        assert!(alice.owns_or_oversees("alice"));
        assert!(!alice.owns_or_oversees("bob"));
        let op = Principal {
            name: "ops".into(),
            role: Role::Operator,
        };
        assert!(op.owns_or_oversees("bob"));
    }
}
