//! Roles and privileges, as PostgreSQL has them.
//!
//! A role may log in, may be a superuser, and may be a member of other roles, whose privileges
//! it then has. Tables, views, external tables, schemas and models have an owner and grants
//! (`GRANT SELECT ON t TO alice`); the owner and superusers may do anything with them. Roles
//! made with `CREATE ROLE` and every owner and grant live in the durable catalog
//! (`catalog.json`), next to the objects they protect, so a dropped table takes its grants
//! with it in the same commit. Roles from the config file's `[[users]]` keep working.
//!
//! Checks happen in two places: statements that change the catalog (`CREATE`, `DROP`,
//! `GRANT`) are checked on the parsed statement (`server::hooks::access`), and everything a
//! query reads or writes is checked on its logical plan ([`plan_check`]), which every
//! statement passes through whatever the protocol or the number of statements in a message.

pub mod plan_check;
pub mod scram;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use datafusion::config::ConfigOptions;
use serde::{Deserialize, Serialize};

use crate::engine::storage::{Manifest, Store};
use crate::error::SemsqlError;
use scram::ScramSecret;
use semsql_udfs::lm::{Caller, LmError, LmSettings};

/// The pseudo-role every role belongs to (`GRANT ... TO PUBLIC`).
pub const PUBLIC: &str = "public";
/// PostgreSQL's predefined roles for reading and writing server files (COPY, external tables).
pub const READ_SERVER_FILES: &str = "pg_read_server_files";
pub const WRITE_SERVER_FILES: &str = "pg_write_server_files";
const PREDEFINED_ROLES: [&str; 2] = [READ_SERVER_FILES, WRITE_SERVER_FILES];

/// Schemas every role may read: the catalogs and semsql's system tables (whose rows are
/// filtered per role where they hold anything private).
pub const SYSTEM_SCHEMAS: [&str; 3] = ["pg_catalog", "information_schema", "semsql"];

/// A privilege on an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Privilege {
    Select,
    Insert,
    Update,
    Delete,
    Truncate,
    Usage,
    Create,
}

impl Privilege {
    /// What `GRANT ALL` on a table gives.
    pub const TABLE: [Privilege; 5] = [
        Privilege::Select,
        Privilege::Insert,
        Privilege::Update,
        Privilege::Delete,
        Privilege::Truncate,
    ];
    pub const SCHEMA: [Privilege; 2] = [Privilege::Usage, Privilege::Create];

    pub fn keyword(self) -> &'static str {
        match self {
            Privilege::Select => "SELECT",
            Privilege::Insert => "INSERT",
            Privilege::Update => "UPDATE",
            Privilege::Delete => "DELETE",
            Privilege::Truncate => "TRUNCATE",
            Privilege::Usage => "USAGE",
            Privilege::Create => "CREATE",
        }
    }

    /// The letter `aclitem` uses for it (`r` read, `a` append, `w` write, ...), for `\dp`.
    pub fn acl_letter(self) -> char {
        match self {
            Privilege::Select => 'r',
            Privilege::Insert => 'a',
            Privilege::Update => 'w',
            Privilege::Delete => 'd',
            Privilege::Truncate => 'D',
            Privilege::Usage => 'U',
            Privilege::Create => 'C',
        }
    }
}

/// An object's owner and the privileges granted on it, by grantee (`public` for PUBLIC).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Acl {
    /// `None`: made before roles existed, or by the server itself; only superusers own it.
    pub owner: Option<String>,
    #[serde(default)]
    pub grants: BTreeMap<String, BTreeSet<Privilege>>,
}

impl Acl {
    pub fn owned_by(owner: &str) -> Self {
        Acl {
            owner: Some(owner.to_owned()),
            grants: BTreeMap::new(),
        }
    }

    /// PostgreSQL's `aclitem[]` text: `{alice=arwdD/alice,=r/alice}`; `None` when nothing was
    /// granted (psql shows an empty cell, as for PostgreSQL's default privileges).
    pub fn display(&self) -> Option<String> {
        let items = self.items();
        (!items.is_empty()).then(|| format!("{{{}}}", items.join(",")))
    }

    /// The `aclitem`s one by one (`alice=arwdD/owner`, `=r/owner` for PUBLIC), as
    /// `pg_class.relacl` holds them; empty when nothing was granted.
    pub fn items(&self) -> Vec<String> {
        let grantor = self
            .owner
            .clone()
            .unwrap_or_else(|| crate::engine::pg_catalog_access::BOOTSTRAP_SUPERUSER.to_owned());
        self.grants
            .iter()
            .map(|(grantee, privileges)| {
                let grantee = if grantee == PUBLIC { "" } else { grantee };
                // In aclitem's own order.
                let letters: String = "arwdDUC"
                    .chars()
                    .filter(|letter| privileges.iter().any(|p| p.acl_letter() == *letter))
                    .collect();
                format!("{grantee}={letters}/{grantor}")
            })
            .collect()
    }
}

/// A role made with `CREATE ROLE` (or `CREATE USER`).
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RoleEntry {
    #[serde(default)]
    pub superuser: bool,
    #[serde(default)]
    pub login: bool,
    /// PostgreSQL's SCRAM-SHA-256 verifier (`SCRAM-SHA-256$4096:salt$StoredKey:ServerKey`);
    /// `None`: the role has no password and cannot log in with one.
    #[serde(default)]
    pub verifier: Option<String>,
    /// Roles this role is a member of (`GRANT parent TO role`).
    #[serde(default)]
    pub member_of: BTreeSet<String>,
}

impl std::fmt::Debug for RoleEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoleEntry")
            .field("superuser", &self.superuser)
            .field("login", &self.login)
            .field("verifier", &self.verifier.as_ref().map(|_| "<redacted>"))
            .field("member_of", &self.member_of)
            .finish()
    }
}

/// What the access layer keeps in the manifest besides per-schema ACLs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AccessCatalog {
    #[serde(default)]
    pub roles: BTreeMap<String, RoleEntry>,
    /// Models' owners and `GRANT USAGE ON MODEL` grants, by model name.
    #[serde(default)]
    pub models: BTreeMap<String, Acl>,
}

/// A role from the config file's `[[users]]`.
#[derive(Debug, Clone)]
pub struct ConfiguredRole {
    pub superuser: bool,
    pub secret: ScramSecret,
}

/// Where the server's files may be read and written from SQL.
#[derive(Debug, Clone, Default)]
pub struct FileAccess {
    /// When not empty, every server file a statement names must be inside one of these.
    pub directories: Vec<PathBuf>,
}

/// An object privileges apply to.
#[derive(Debug, Clone, Copy)]
pub enum Object<'a> {
    Relation { schema: &'a str, name: &'a str },
    Schema(&'a str),
    Model(&'a str),
}

impl Object<'_> {
    /// PostgreSQL's word for it in messages.
    fn kind(&self, manifest: &Manifest) -> &'static str {
        match self {
            Object::Relation { schema, name } => {
                // Definitions are views and external tables; the latter say EXTERNAL.
                let is_view = manifest.schemas.get(*schema).is_some_and(|entry| {
                    entry.definitions.get(*name).is_some_and(|d| {
                        let opening: Vec<String> = d
                            .sql
                            .split_whitespace()
                            .take(3)
                            .map(str::to_ascii_uppercase)
                            .collect();
                        !opening.iter().any(|word| word == "EXTERNAL")
                    })
                });
                if is_view {
                    "view"
                } else {
                    "table"
                }
            }
            Object::Schema(_) => "schema",
            Object::Model(_) => "model",
        }
    }

    fn name(&self) -> &str {
        match self {
            Object::Relation { name, .. } => name,
            Object::Schema(name) | Object::Model(name) => name,
        }
    }
}

/// Reading or writing a server file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileUse {
    Read,
    Write,
}

/// The server's roles and privileges.
#[derive(Debug)]
pub struct Access {
    store: Arc<Store>,
    configured: BTreeMap<String, ConfiguredRole>,
    /// Loopback trust with no roles configured: a name nobody defined is a superuser, as
    /// every connection was before roles existed.
    unknown_are_superusers: bool,
    files: FileAccess,
}

/// A role's superuser bit and every role whose privileges it has (itself, its groups,
/// PUBLIC), for one check.
struct Standing {
    superuser: bool,
    roles: BTreeSet<String>,
}

/// What the access layer knows of one role.
#[derive(Debug, Clone, PartialEq)]
pub struct RoleInfo {
    pub name: String,
    pub superuser: bool,
    pub login: bool,
    pub member_of: BTreeSet<String>,
    pub from_config: bool,
}

fn denied(message: String) -> SemsqlError {
    SemsqlError::InsufficientPrivilege(message)
}

impl Access {
    pub fn new(
        store: Arc<Store>,
        configured: BTreeMap<String, ConfiguredRole>,
        unknown_are_superusers: bool,
        files: FileAccess,
    ) -> Self {
        Access {
            store,
            configured,
            unknown_are_superusers,
            files,
        }
    }

    /// Everything known of `name`, or `None` for a role that does not exist.
    pub fn role(&self, name: &str) -> Option<RoleInfo> {
        if let Some(configured) = self.configured.get(name) {
            let member_of = self.store.read(|manifest| {
                manifest
                    .access
                    .roles
                    .get(name)
                    .map(|r| r.member_of.clone())
                    .unwrap_or_default()
            });
            return Some(RoleInfo {
                name: name.to_owned(),
                superuser: configured.superuser,
                login: true,
                member_of,
                from_config: true,
            });
        }
        if PREDEFINED_ROLES.contains(&name) {
            return Some(RoleInfo {
                name: name.to_owned(),
                superuser: false,
                login: false,
                member_of: BTreeSet::new(),
                from_config: false,
            });
        }
        let stored = self
            .store
            .read(|manifest| manifest.access.roles.get(name).cloned());
        match stored {
            Some(role) => Some(RoleInfo {
                name: name.to_owned(),
                superuser: role.superuser,
                login: role.login,
                member_of: role.member_of,
                from_config: false,
            }),
            None if self.unknown_are_superusers => Some(RoleInfo {
                name: name.to_owned(),
                superuser: true,
                login: true,
                member_of: BTreeSet::new(),
                from_config: false,
            }),
            None => None,
        }
    }

    /// Every role, for `pg_roles`: the config file's, the stored ones and the predefined ones.
    pub fn role_names(&self) -> Vec<String> {
        let mut names: BTreeSet<String> = self.configured.keys().cloned().collect();
        names.extend(PREDEFINED_ROLES.iter().map(|s| s.to_string()));
        self.store.read(|manifest| {
            names.extend(manifest.access.roles.keys().cloned());
        });
        names.into_iter().collect()
    }

    /// Every name that owns something: the defined roles, and names trust let in that made
    /// objects (so `pg_get_userbyid` can name every owner `pg_class` shows).
    pub fn owner_names(&self) -> Vec<String> {
        let mut names: BTreeSet<String> = self.role_names().into_iter().collect();
        self.store.read(|manifest| {
            for entry in manifest.schemas.values() {
                let acls = entry.acl.iter().chain(entry.relation_acls.values());
                names.extend(acls.filter_map(|acl| acl.owner.clone()));
            }
            names.extend(
                manifest
                    .access
                    .models
                    .values()
                    .filter_map(|acl| acl.owner.clone()),
            );
        });
        names.into_iter().collect()
    }

    /// Whether a role of this name was defined (config file, predefined or `CREATE ROLE`),
    /// as opposed to a name trust lets in.
    pub fn role_defined(&self, name: &str) -> bool {
        self.configured.contains_key(name)
            || PREDEFINED_ROLES.contains(&name)
            || self
                .store
                .read(|manifest| manifest.access.roles.contains_key(name))
    }

    /// The tables, views and external tables of a schema (`GRANT ... ON ALL TABLES IN SCHEMA`).
    pub fn relations_in(&self, schema: &str) -> Result<Vec<String>, SemsqlError> {
        self.store.read(|manifest| {
            let entry = manifest
                .schemas
                .get(schema)
                .ok_or_else(|| SemsqlError::SchemaNotFound(schema.to_owned()))?;
            Ok(entry
                .tables
                .keys()
                .chain(entry.definitions.keys())
                .cloned()
                .collect())
        })
    }

    /// The table an index of `schema` is on.
    pub fn index_table(&self, schema: &str, index: &str) -> Option<String> {
        self.store.read(|manifest| {
            manifest
                .schemas
                .get(schema)
                .and_then(|entry| entry.indexes.get(index))
                .map(|index| index.table.clone())
        })
    }

    /// The SCRAM secret a role logs in with, if it may log in with a password.
    pub fn login_secret(&self, name: &str) -> Option<ScramSecret> {
        if let Some(configured) = self.configured.get(name) {
            return Some(configured.secret.clone());
        }
        let role = self
            .store
            .read(|manifest| manifest.access.roles.get(name).cloned())?;
        if !role.login {
            return None;
        }
        ScramSecret::parse_postgres(role.verifier.as_deref()?).ok()
    }

    pub fn is_superuser(&self, role: &str) -> bool {
        self.role(role).is_some_and(|r| r.superuser)
    }

    /// What `role` stands on in one check, from one lookup of each role involved.
    fn standing(&self, role: &str) -> Standing {
        let mut standing = Standing {
            superuser: false,
            roles: BTreeSet::from([PUBLIC.to_owned()]),
        };
        let mut pending = vec![role.to_owned()];
        while let Some(next) = pending.pop() {
            if !standing.roles.insert(next.clone()) {
                continue;
            }
            if let Some(info) = self.role(&next) {
                standing.superuser |= next == role && info.superuser;
                pending.extend(info.member_of);
            }
        }
        standing
    }

    /// Whether `role` is `member` or one of its (transitive) member roles; superusers are
    /// members of every role, as in PostgreSQL.
    pub fn is_member_of(&self, role: &str, group: &str) -> bool {
        let standing = self.standing(role);
        standing.superuser || standing.roles.contains(group)
    }

    /// The ACL of `object`, with PostgreSQL 15's defaults where none was recorded: the
    /// `public` schema is usable (not creatable) by everyone; anything else unrecorded belongs
    /// to the superusers.
    fn acl(manifest: &Manifest, object: Object) -> Option<Acl> {
        match object {
            Object::Relation { schema, name } => manifest
                .schemas
                .get(schema)
                .and_then(|entry| entry.relation_acls.get(name).cloned()),
            Object::Schema(schema) => {
                let recorded = manifest
                    .schemas
                    .get(schema)
                    .and_then(|entry| entry.acl.clone());
                recorded.or_else(|| {
                    (schema == crate::engine::DEFAULT_SCHEMA).then(|| Acl {
                        owner: None,
                        grants: BTreeMap::from([(
                            PUBLIC.to_owned(),
                            BTreeSet::from([Privilege::Usage]),
                        )]),
                    })
                })
            }
            Object::Model(model) => manifest.access.models.get(model).cloned(),
        }
    }

    pub fn acl_of(&self, object: Object) -> Option<Acl> {
        self.store.read(|manifest| Self::acl(manifest, object))
    }

    /// The owner of `object` (`None`: the superusers).
    pub fn owner(&self, object: Object) -> Option<String> {
        self.acl_of(object).and_then(|acl| acl.owner)
    }

    pub fn is_owner(&self, role: &str, object: Object) -> bool {
        self.owns(&self.standing(role), object)
    }

    fn owns(&self, standing: &Standing, object: Object) -> bool {
        standing.superuser
            || self
                .owner(object)
                .is_some_and(|owner| standing.roles.contains(&owner))
    }

    pub fn has_privilege(&self, role: &str, object: Object, privilege: Privilege) -> bool {
        self.holds(&self.standing(role), object, privilege)
    }

    fn holds(&self, standing: &Standing, object: Object, privilege: Privilege) -> bool {
        if standing.superuser {
            return true;
        }
        let Some(acl) = self.acl_of(object) else {
            return false;
        };
        acl.owner
            .as_ref()
            .is_some_and(|owner| standing.roles.contains(owner))
            || acl.grants.iter().any(|(grantee, privileges)| {
                standing.roles.contains(grantee) && privileges.contains(&privilege)
            })
    }

    /// Checks `privilege` on `object`; a relation also needs USAGE on its schema.
    pub fn check(
        &self,
        role: &str,
        object: Object,
        privilege: Privilege,
    ) -> Result<(), SemsqlError> {
        let standing = self.standing(role);
        if let Object::Relation { schema, .. } = object {
            if SYSTEM_SCHEMAS.contains(&schema) {
                return Ok(());
            }
            if !self.holds(&standing, Object::Schema(schema), Privilege::Usage) {
                return Err(denied(format!("permission denied for schema {schema}")));
            }
        }
        if self.holds(&standing, object, privilege) {
            return Ok(());
        }
        let kind = self.store.read(|manifest| object.kind(manifest));
        Err(denied(format!(
            "permission denied for {kind} {}",
            object.name()
        )))
    }

    /// Checks that `role` owns `object` (ALTER, DROP, GRANT).
    pub fn check_owner(&self, role: &str, object: Object) -> Result<(), SemsqlError> {
        if self.is_owner(role, object) {
            return Ok(());
        }
        let kind = self.store.read(|manifest| object.kind(manifest));
        Err(denied(format!("must be owner of {kind} {}", object.name())))
    }

    pub fn check_superuser(&self, role: &str, what: &str) -> Result<(), SemsqlError> {
        if self.is_superuser(role) {
            Ok(())
        } else {
            Err(denied(format!("permission denied to {what}")))
        }
    }

    /// Whether a relation is one the catalog manages (and so has privileges); system tables
    /// and names that resolve to nothing are not.
    pub fn is_managed_relation(&self, schema: &str, name: &str) -> bool {
        self.store.read(|manifest| {
            manifest.schemas.get(schema).is_some_and(|entry| {
                entry.tables.contains_key(name) || entry.definitions.contains_key(name)
            })
        })
    }

    /// Makes `role` the owner of a newly made object (its grants start empty). An object that
    /// already has an owner keeps it (`CREATE OR REPLACE VIEW`, `IF NOT EXISTS`).
    pub fn claim(&self, role: &str, object: Object) -> Result<(), SemsqlError> {
        self.store.commit(|manifest| {
            Self::update_acl(manifest, object, |acl| {
                Ok(match acl {
                    Some(acl) if acl.owner.is_some() => Some(acl),
                    Some(acl) => Some(Acl {
                        owner: Some(role.to_owned()),
                        grants: acl.grants,
                    }),
                    None => Some(Acl::owned_by(role)),
                })
            })
        })
    }

    /// Forgets a model's owner and grants (`DROP MODEL`).
    pub fn forget_model(&self, model: &str) -> Result<(), SemsqlError> {
        self.store.commit(|manifest| {
            manifest.access.models.remove(model);
            Ok(())
        })
    }

    /// Replaces the ACL recorded for `object` with what `change` makes of it (`None`: none).
    fn update_acl(
        manifest: &mut Manifest,
        object: Object,
        change: impl FnOnce(Option<Acl>) -> Result<Option<Acl>, SemsqlError>,
    ) -> Result<(), SemsqlError> {
        match object {
            Object::Schema(schema) => {
                let entry = manifest
                    .schemas
                    .get_mut(schema)
                    .ok_or_else(|| SemsqlError::SchemaNotFound(schema.to_owned()))?;
                entry.acl = change(entry.acl.take())?;
            }
            Object::Relation { schema, name } => {
                let entry = manifest
                    .schemas
                    .get_mut(schema)
                    .ok_or_else(|| SemsqlError::SchemaNotFound(schema.to_owned()))?;
                if !entry.tables.contains_key(name) && !entry.definitions.contains_key(name) {
                    return Err(SemsqlError::TableNotFound(name.to_owned()));
                }
                if let Some(acl) = change(entry.relation_acls.remove(name))? {
                    entry.relation_acls.insert(name.to_owned(), acl);
                }
            }
            Object::Model(model) => {
                if let Some(acl) = change(manifest.access.models.remove(model))? {
                    manifest.access.models.insert(model.to_owned(), acl);
                }
            }
        }
        Ok(())
    }

    /// `GRANT privileges ON object TO grantees` (`revoke`: `REVOKE ... FROM`).
    pub fn change_grants(
        &self,
        object: Object,
        privileges: &[Privilege],
        grantees: &[String],
        revoke: bool,
    ) -> Result<(), SemsqlError> {
        for grantee in grantees {
            if grantee != PUBLIC && self.role(grantee).is_none() {
                return Err(SemsqlError::RoleNotFound(grantee.clone()));
            }
        }
        self.store.commit(|manifest| {
            // The `public` schema's default ACL is the starting point of its first grant.
            let current = Self::acl(manifest, object);
            Self::update_acl(manifest, object, |_| {
                let mut acl = current.unwrap_or_default();
                for grantee in grantees {
                    let held = acl.grants.entry(grantee.clone()).or_default();
                    for privilege in privileges {
                        if revoke {
                            held.remove(privilege);
                        } else {
                            held.insert(*privilege);
                        }
                    }
                    if held.is_empty() {
                        acl.grants.remove(grantee);
                    }
                }
                Ok(Some(acl))
            })
        })
    }

    /// `CREATE ROLE`.
    pub fn create_role(&self, name: &str, entry: RoleEntry) -> Result<(), SemsqlError> {
        check_role_name(name)?;
        if self.configured.contains_key(name) || PREDEFINED_ROLES.contains(&name) {
            return Err(SemsqlError::DuplicateRole(name.to_owned()));
        }
        for parent in &entry.member_of {
            self.role(parent)
                .ok_or_else(|| SemsqlError::RoleNotFound(parent.clone()))?;
        }
        self.store.commit(|manifest| {
            if manifest.access.roles.contains_key(name) {
                return Err(SemsqlError::DuplicateRole(name.to_owned()));
            }
            manifest.access.roles.insert(name.to_owned(), entry);
            Ok(())
        })
    }

    /// `ALTER ROLE`: `change` edits the stored entry.
    pub fn alter_role(
        &self,
        name: &str,
        change: impl FnOnce(&mut RoleEntry) -> Result<(), SemsqlError>,
    ) -> Result<(), SemsqlError> {
        if self.configured.contains_key(name) {
            return Err(denied(format!(
                "role \"{name}\" is defined in the config file; change it there"
            )));
        }
        self.store.commit(|manifest| {
            let entry = manifest
                .access
                .roles
                .get_mut(name)
                .ok_or_else(|| SemsqlError::RoleNotFound(name.to_owned()))?;
            change(entry)
        })
    }

    /// `DROP ROLE`: refused while the role owns anything, as in PostgreSQL (2BP01).
    pub fn drop_role(&self, name: &str, if_exists: bool) -> Result<bool, SemsqlError> {
        if self.configured.contains_key(name) || PREDEFINED_ROLES.contains(&name) {
            return Err(denied(format!(
                "role \"{name}\" is defined by the server or its config file and cannot be dropped"
            )));
        }
        self.store.commit(|manifest| {
            if !manifest.access.roles.contains_key(name) {
                return if if_exists {
                    Ok(false)
                } else {
                    Err(SemsqlError::RoleNotFound(name.to_owned()))
                };
            }
            let owns = manifest.schemas.iter().find_map(|(schema, entry)| {
                let owned = |acl: &Acl| acl.owner.as_deref() == Some(name);
                if entry.acl.as_ref().is_some_and(owned) {
                    return Some(format!("schema {schema}"));
                }
                entry
                    .relation_acls
                    .iter()
                    .find(|(_, acl)| owned(acl))
                    .map(|(relation, _)| format!("table {schema}.{relation}"))
            });
            let owns = owns.or_else(|| {
                manifest
                    .access
                    .models
                    .iter()
                    .find(|(_, acl)| acl.owner.as_deref() == Some(name))
                    .map(|(model, _)| format!("model {model}"))
            });
            if let Some(object) = owns {
                return Err(SemsqlError::ObjectInUse(format!(
                    "role \"{name}\" cannot be dropped because some objects depend on it: owner of {object}"
                )));
            }
            manifest.access.roles.remove(name);
            // Its grants and memberships go with it.
            for entry in manifest.schemas.values_mut() {
                if let Some(acl) = entry.acl.as_mut() {
                    acl.grants.remove(name);
                }
                for acl in entry.relation_acls.values_mut() {
                    acl.grants.remove(name);
                }
            }
            for acl in manifest.access.models.values_mut() {
                acl.grants.remove(name);
            }
            for role in manifest.access.roles.values_mut() {
                role.member_of.remove(name);
            }
            Ok(true)
        })
    }

    /// `GRANT group TO member` (`revoke`: `REVOKE group FROM member`).
    pub fn change_membership(
        &self,
        group: &str,
        member: &str,
        revoke: bool,
    ) -> Result<(), SemsqlError> {
        self.role(group)
            .ok_or_else(|| SemsqlError::RoleNotFound(group.to_owned()))?;
        self.role(member)
            .ok_or_else(|| SemsqlError::RoleNotFound(member.to_owned()))?;
        if !revoke && self.standing(group).roles.contains(member) {
            return Err(SemsqlError::InvalidGrant(format!(
                "role \"{member}\" is a member of role \"{group}\""
            )));
        }
        let configured = self.configured.contains_key(member);
        self.store.commit(|manifest| {
            // A config-file role's memberships are kept in an entry that cannot log in (its
            // login comes from the config file).
            let entry = match manifest.access.roles.get_mut(member) {
                Some(entry) => entry,
                None if configured => manifest.access.roles.entry(member.to_owned()).or_default(),
                None => return Err(SemsqlError::RoleNotFound(member.to_owned())),
            };
            if revoke {
                entry.member_of.remove(group);
            } else {
                entry.member_of.insert(group.to_owned());
            }
            Ok(())
        })
    }

    /// Checks that `role` may use the server file `path` as `usage` says: a superuser or a
    /// member of `pg_read_server_files` / `pg_write_server_files`, and a path inside the
    /// configured directories when there are any.
    pub fn check_server_file(
        &self,
        role: &str,
        path: &str,
        usage: FileUse,
    ) -> Result<(), SemsqlError> {
        let group = match usage {
            FileUse::Read => READ_SERVER_FILES,
            FileUse::Write => WRITE_SERVER_FILES,
        };
        if !self.is_member_of(role, group) {
            let verb = match usage {
                FileUse::Read => "read from",
                FileUse::Write => "write to",
            };
            return Err(denied(format!(
                "permission denied to {verb} a server file: only superusers and members of {group} may"
            )));
        }
        if self.files.directories.is_empty() {
            return Ok(());
        }
        let local = path.strip_prefix("file://").unwrap_or(path);
        if local.contains("://") {
            return Err(denied(format!(
                "server files are limited to the configured directories; \"{path}\" is not a local path"
            )));
        }
        let normalized = normalize(Path::new(local));
        if self
            .files
            .directories
            .iter()
            .any(|dir| normalized.starts_with(normalize(dir)))
        {
            Ok(())
        } else {
            Err(denied(format!(
                "\"{path}\" is outside the directories server files may be used from (files.directories)"
            )))
        }
    }
}

/// A path with `.` and `..` resolved lexically (symbolic links are the operator's to avoid
/// in the configured directories), so `/srv/data/../../etc` is not inside `/srv/data`.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// PostgreSQL reserves `public`, `none` and the `pg_` prefix.
fn check_role_name(name: &str) -> Result<(), SemsqlError> {
    if name == PUBLIC || name == "none" || name == "current_user" || name == "session_user" {
        return Err(SemsqlError::ReservedName(format!(
            "role name \"{name}\" is reserved"
        )));
    }
    if name.starts_with("pg_") {
        return Err(SemsqlError::ReservedName(format!(
            "role name \"{name}\" is reserved: role names starting with \"pg_\" are reserved"
        )));
    }
    if name.is_empty() {
        return Err(SemsqlError::ReservedName(
            "a role name cannot be empty".into(),
        ));
    }
    Ok(())
}

/// The role a connection's session runs as.
#[derive(Debug)]
pub struct SessionCaller {
    pub role: String,
    pub access: Arc<Access>,
}

impl Caller for SessionCaller {
    fn role(&self) -> &str {
        &self.role
    }

    fn is_superuser(&self) -> bool {
        self.access.is_superuser(&self.role)
    }

    fn may_use_model(&self, model: &str) -> Result<(), LmError> {
        self.access
            .check(&self.role, Object::Model(model), Privilege::Usage)
            .map_err(|err| LmError::new("42501", err.to_string()))
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// The access layer and role of the session whose options these are; `None` for the
/// server's own sessions, which may do anything.
pub fn caller_of(options: &ConfigOptions) -> Option<(Arc<Access>, String)> {
    let settings = options.extensions.get::<LmSettings>()?;
    let caller = settings.caller.as_ref()?;
    let ours = caller.as_any().downcast_ref::<SessionCaller>()?;
    Some((ours.access.clone(), ours.role.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_normalized_before_the_directory_check() {
        assert!(normalize(Path::new("/srv/data/../../etc/passwd")).starts_with("/etc"));
        assert!(!normalize(Path::new("/srv/data/../../etc/passwd")).starts_with("/srv/data"));
        assert!(normalize(Path::new("/srv/data/./x.csv")).starts_with("/srv/data"));
    }

    #[test]
    fn acls_display_as_postgres_aclitems() {
        let mut acl = Acl::owned_by("alice");
        acl.grants.insert(
            "bob".into(),
            BTreeSet::from([Privilege::Select, Privilege::Insert]),
        );
        acl.grants
            .insert(PUBLIC.into(), BTreeSet::from([Privilege::Select]));
        assert_eq!(acl.display().unwrap(), "{bob=ar/alice,=r/alice}");
    }

    #[test]
    fn reserved_role_names_are_refused() {
        assert!(check_role_name("public").is_err());
        assert!(check_role_name("pg_monitor").is_err());
        assert!(check_role_name("alice").is_ok());
    }
}
