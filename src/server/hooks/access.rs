//! Roles and privileges at the statement level: `CREATE/ALTER/DROP ROLE` (and USER),
//! `GRANT/REVOKE`, and the checks for statements that change the catalog (`CREATE TABLE` needs
//! CREATE on the schema, `DROP` needs ownership, ...). What queries read and write is checked
//! on their plans (`crate::access::plan_check`). Owners of new objects are recorded by
//! `commands::finish` once the object exists.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::Schema;
use datafusion::common::ParamValues;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{
    Action, AlterRoleOperation, CreateRole, Expr, GrantObjects, Grantee, GranteeName, GranteesType,
    Ident, ObjectName, ObjectType, Password, Privileges, RoleOption, Statement, Value,
};
use datafusion_postgres::hooks::HookClient;
use datafusion_postgres::QueryHook;
use pgwire::api::results::{Response, Tag};
use pgwire::api::ClientInfo;
use pgwire::error::{PgWireError, PgWireResult};

use super::placeholder_plan;
use crate::access::scram::ScramSecret;
use crate::access::{caller_of, Access, Object, Privilege, RoleEntry, PUBLIC};
use crate::error::SemsqlError;

#[derive(Debug)]
pub struct AccessHook;

/// A name as PostgreSQL keeps it: unquoted names fold to lower case.
pub fn fold(ident: &Ident) -> String {
    match ident.quote_style {
        Some(_) => ident.value.clone(),
        None => ident.value.to_lowercase(),
    }
}

/// `(schema, name)` of an object name, unqualified names in the session's default schema.
pub fn relation_of(ctx: &SessionContext, name: &ObjectName) -> (String, String) {
    let parts: Vec<String> = name
        .0
        .iter()
        .filter_map(|part| part.as_ident().map(fold))
        .collect();
    match parts.as_slice() {
        [.., schema, table] => (schema.clone(), table.clone()),
        [table] => (
            ctx.state()
                .config()
                .options()
                .catalog
                .default_schema
                .clone(),
            table.clone(),
        ),
        [] => (String::new(), String::new()),
    }
}

fn single_name(name: &ObjectName) -> String {
    name.0
        .last()
        .and_then(|part| part.as_ident())
        .map(fold)
        .unwrap_or_default()
}

fn string_literal(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Value(value) => match &value.value {
            Value::SingleQuotedString(text) | Value::DoubleQuotedString(text) => Some(text.clone()),
            _ => None,
        },
        _ => None,
    }
}

/// What `PASSWORD '...'` stores: a verifier as given (psql's `\password` sends one), else the
/// password made into one; `PASSWORD NULL` removes it.
fn verifier_of(password: &Password) -> Result<Option<String>, SemsqlError> {
    match password {
        Password::NullPassword => Ok(None),
        Password::Password(expr) => {
            let text = string_literal(expr).ok_or_else(|| {
                SemsqlError::InvalidParameter("PASSWORD takes a string literal".into())
            })?;
            if ScramSecret::looks_like_verifier(&text) {
                ScramSecret::parse_postgres(&text).map_err(SemsqlError::InvalidParameter)?;
                Ok(Some(text))
            } else if text.is_empty() {
                // PostgreSQL: an empty password is no password.
                Ok(None)
            } else {
                Ok(Some(ScramSecret::from_password(&text).to_postgres()))
            }
        }
    }
}

fn unsupported(what: &str) -> SemsqlError {
    SemsqlError::NotSupported(format!("{what} is not supported"))
}

/// Applies one role option to a stored role.
fn apply_option(entry: &mut RoleEntry, option: &RoleOption) -> Result<(), SemsqlError> {
    match option {
        RoleOption::SuperUser(value) => entry.superuser = *value,
        RoleOption::Login(value) => entry.login = *value,
        RoleOption::Password(password) => entry.verifier = verifier_of(password)?,
        // Accepted and meaningless here: every role inherits, and only superusers create
        // databases, roles or replicate.
        RoleOption::Inherit(true)
        | RoleOption::CreateDB(false)
        | RoleOption::CreateRole(false)
        | RoleOption::Replication(false)
        | RoleOption::BypassRLS(false) => {}
        other => return Err(unsupported(&format!("role option {other}"))),
    }
    Ok(())
}

fn create_role(access: &Access, create: &CreateRole) -> Result<Response, SemsqlError> {
    if create.names.len() != 1 {
        return Err(unsupported("creating several roles in one statement"));
    }
    let name = single_name(&create.names[0]);
    let mut entry = RoleEntry {
        superuser: create.superuser.unwrap_or(false),
        login: create.login.unwrap_or(false),
        verifier: match &create.password {
            Some(password) => verifier_of(password)?,
            None => None,
        },
        member_of: create
            .in_role
            .iter()
            .chain(&create.in_group)
            .map(fold)
            .collect(),
    };
    if create.inherit == Some(false)
        || create.create_db == Some(true)
        || create.create_role == Some(true)
        || create.replication == Some(true)
        || create.bypassrls == Some(true)
        || create.connection_limit.is_some()
        || create.valid_until.is_some()
        || !create.role.is_empty()
        || !create.admin.is_empty()
        || !create.user.is_empty()
    {
        return Err(unsupported(
            "this role option (semsql has LOGIN, SUPERUSER, PASSWORD and IN ROLE)",
        ));
    }
    if create.if_not_exists && access.role_defined(&name) {
        return Ok(Response::Execution(Tag::new("CREATE ROLE")));
    }
    entry.member_of.retain(|parent| !parent.is_empty());
    access.create_role(&name, entry)?;
    Ok(Response::Execution(Tag::new("CREATE ROLE")))
}

fn alter_role(
    access: &Access,
    me: &str,
    name: &Ident,
    operation: &AlterRoleOperation,
) -> Result<Response, SemsqlError> {
    let name = fold(name);
    let AlterRoleOperation::WithOptions { options } = operation else {
        return Err(unsupported("this ALTER ROLE form"));
    };
    // As in PostgreSQL, a role may change its own password; anything else is a superuser's.
    let own_password_only = name == me
        && options
            .iter()
            .all(|option| matches!(option, RoleOption::Password(_)));
    if !own_password_only {
        access.check_superuser(me, "alter role")?;
    }
    access.alter_role(&name, |entry| {
        for option in options {
            apply_option(entry, option)?;
        }
        Ok(())
    })?;
    Ok(Response::Execution(Tag::new("ALTER ROLE")))
}

/// The privileges a GRANT or REVOKE names, checked against what the object takes.
fn privileges_of(
    privileges: &Privileges,
    allowed: &[Privilege],
) -> Result<Vec<Privilege>, SemsqlError> {
    let actions = match privileges {
        Privileges::All { .. } => return Ok(allowed.to_vec()),
        Privileges::Actions(actions) => actions,
    };
    let mut out = Vec::new();
    for action in actions {
        let privilege = match action {
            Action::Select { columns: None } => Privilege::Select,
            Action::Insert { columns: None } => Privilege::Insert,
            Action::Update { columns: None } => Privilege::Update,
            Action::Delete => Privilege::Delete,
            Action::Truncate => Privilege::Truncate,
            Action::Usage => Privilege::Usage,
            Action::Create { obj_type: None } => Privilege::Create,
            other => return Err(unsupported(&format!("privilege {other}"))),
        };
        if !allowed.contains(&privilege) {
            return Err(SemsqlError::InvalidGrant(format!(
                "invalid privilege type {} for this object",
                privilege.keyword()
            )));
        }
        out.push(privilege);
    }
    Ok(out)
}

fn grantees_of(grantees: &[Grantee]) -> Result<Vec<String>, SemsqlError> {
    grantees
        .iter()
        .map(|grantee| match (&grantee.grantee_type, &grantee.name) {
            (GranteesType::Public, _) => Ok(PUBLIC.to_owned()),
            (_, Some(GranteeName::ObjectName(name))) => {
                let name = single_name(name);
                Ok(if name == PUBLIC {
                    PUBLIC.to_owned()
                } else {
                    name
                })
            }
            _ => Err(unsupported("this grantee")),
        })
        .collect()
}

/// `GRANT/REVOKE privileges ON objects TO/FROM grantees`, and role membership.
fn grant_or_revoke(
    access: &Access,
    ctx: &SessionContext,
    me: &str,
    privileges: &Privileges,
    objects: Option<&GrantObjects>,
    grantees: &[Grantee],
    revoke: bool,
) -> Result<Response, SemsqlError> {
    let tag = if revoke { "REVOKE" } else { "GRANT" };
    let grantees = grantees_of(grantees)?;
    let Some(objects) = objects else {
        // `GRANT group TO member` (respelled `GRANT ROLE group` by the compat layer).
        let Privileges::Actions(actions) = privileges else {
            return Err(unsupported("GRANT ALL without ON"));
        };
        access.check_superuser(me, "grant or revoke role membership")?;
        for action in actions {
            let Action::Role { role } = action else {
                return Err(unsupported(&format!("GRANT {action} without ON")));
            };
            for member in &grantees {
                access.change_membership(&single_name(role), member, revoke)?;
            }
        }
        return Ok(Response::Execution(Tag::new(tag)));
    };
    let mut targets: Vec<(String, String)> = Vec::new();
    let mut schemas: Vec<String> = Vec::new();
    match objects {
        GrantObjects::Tables(names) | GrantObjects::Views(names) => {
            targets.extend(names.iter().map(|name| relation_of(ctx, name)));
        }
        GrantObjects::AllTablesInSchema { schemas: names } => {
            for schema in names {
                let schema = single_name(schema);
                let relations = access.relations_in(&schema)?;
                targets.extend(relations.into_iter().map(|name| (schema.clone(), name)));
            }
        }
        GrantObjects::Schemas(names) => {
            schemas = names.iter().map(single_name).collect();
        }
        _ => return Err(unsupported(&format!("GRANT ON {objects}"))),
    }
    if !schemas.is_empty() {
        let privileges = privileges_of(privileges, &Privilege::SCHEMA)?;
        for schema in &schemas {
            let object = Object::Schema(schema);
            access.check_owner(me, object)?;
            access.change_grants(object, &privileges, &grantees, revoke)?;
        }
        return Ok(Response::Execution(Tag::new(tag)));
    }
    let privileges = privileges_of(privileges, &Privilege::TABLE)?;
    for (schema, name) in &targets {
        if !access.is_managed_relation(schema, name) {
            return Err(SemsqlError::TableNotFound(name.clone()));
        }
        let object = Object::Relation { schema, name };
        access.check_owner(me, object)?;
        access.change_grants(object, &privileges, &grantees, revoke)?;
    }
    Ok(Response::Execution(Tag::new(tag)))
}

/// The role statements this hook answers, run as `me`.
fn answer(
    access: &Access,
    ctx: &SessionContext,
    me: &str,
    statement: &Statement,
) -> Option<Result<Response, SemsqlError>> {
    let result = match statement {
        Statement::CreateRole(create) => access
            .check_superuser(me, "create role")
            .and_then(|_| create_role(access, create)),
        Statement::AlterRole { name, operation } => alter_role(access, me, name, operation),
        Statement::Drop {
            object_type: ObjectType::Role,
            names,
            if_exists,
            ..
        } => access.check_superuser(me, "drop role").and_then(|_| {
            for name in names {
                let name = single_name(name);
                if name == me {
                    return Err(SemsqlError::ObjectInUse(
                        "current user cannot be dropped".into(),
                    ));
                }
                access.drop_role(&name, *if_exists)?;
            }
            Ok(Response::Execution(Tag::new("DROP ROLE")))
        }),
        Statement::Grant(grant) => grant_or_revoke(
            access,
            ctx,
            me,
            &grant.privileges,
            grant.objects.as_ref(),
            &grant.grantees,
            false,
        ),
        Statement::Revoke(revoke) => grant_or_revoke(
            access,
            ctx,
            me,
            &revoke.privileges,
            revoke.objects.as_ref(),
            &revoke.grantees,
            true,
        ),
        _ => return None,
    };
    Some(result)
}

/// Checks a statement that changes the catalog before it runs.
pub fn check_ddl(
    access: &Access,
    ctx: &SessionContext,
    me: &str,
    statement: &Statement,
) -> Result<(), SemsqlError> {
    let create_in = |name: &ObjectName| {
        let (schema, _) = relation_of(ctx, name);
        access.check(me, Object::Schema(&schema), Privilege::Create)
    };
    let owner_of = |name: &ObjectName| {
        let (schema, table) = relation_of(ctx, name);
        if access.is_managed_relation(&schema, &table) {
            access.check_owner(
                me,
                Object::Relation {
                    schema: &schema,
                    name: &table,
                },
            )
        } else {
            Ok(())
        }
    };
    match statement {
        Statement::CreateTable(create) => create_in(&create.name),
        Statement::CreateView(view) => {
            create_in(&view.name)?;
            if view.or_replace {
                owner_of(&view.name)?;
            }
            Ok(())
        }
        Statement::CreateSchema { .. } => access.check_superuser(me, "create a schema"),
        Statement::CreateIndex(index) => owner_of(&index.table_name),
        Statement::AlterTable(alter) => owner_of(&alter.name),
        Statement::Drop {
            object_type: ObjectType::Table | ObjectType::View,
            names,
            ..
        } => names.iter().try_for_each(owner_of),
        Statement::Drop {
            object_type: ObjectType::Index,
            names,
            ..
        } => names.iter().try_for_each(|name| {
            let (schema, index) = relation_of(ctx, name);
            match access.index_table(&schema, &index) {
                Some(table) => access.check_owner(
                    me,
                    Object::Relation {
                        schema: &schema,
                        name: &table,
                    },
                ),
                None => Ok(()),
            }
        }),
        Statement::Drop {
            object_type: ObjectType::Schema,
            names,
            ..
        } => names.iter().try_for_each(|name| {
            let schema = single_name(name);
            access.check_owner(me, Object::Schema(&schema))
        }),
        Statement::Truncate(truncate) => truncate.table_names.iter().try_for_each(|target| {
            let (schema, name) = relation_of(ctx, &target.name);
            if access.is_managed_relation(&schema, &name) {
                access.check(
                    me,
                    Object::Relation {
                        schema: &schema,
                        name: &name,
                    },
                    Privilege::Truncate,
                )
            } else {
                Ok(())
            }
        }),
        // Server-side settings that reach the file system or the whole server.
        Statement::Set(set) => {
            let text = set.to_string().to_ascii_lowercase();
            if text.contains("datafusion.runtime.") || text.contains("datafusion.catalog.location")
            {
                access.check_superuser(me, "change the server's runtime settings")
            } else {
                Ok(())
            }
        }
        _ => Ok(()),
    }
}

/// The caller of a hook's session, or `None` for the server's own sessions.
fn caller(ctx: &SessionContext) -> Option<(Arc<Access>, String)> {
    caller_of(ctx.state().config().options())
}

/// `EXPLAIN` of a query the role may not run fails as the query would (DataFusion would show
/// the refusal as a row of the plan, after the plan itself).
async fn check_explain(
    ctx: &SessionContext,
    statement: &Statement,
) -> Option<PgWireResult<Response>> {
    let Statement::Explain { statement, .. } = statement else {
        return None;
    };
    let state = ctx.state();
    let plan = state
        .statement_to_plan(datafusion::sql::parser::Statement::Statement(
            statement.clone(),
        ))
        .await
        .ok()?;
    crate::access::plan_check::check_plan(&plan, state.config().options())
        .err()
        .map(|err| Err(PgWireError::ApiError(Box::new(err))))
}

async fn handle(ctx: &SessionContext, statement: &Statement) -> Option<PgWireResult<Response>> {
    let (access, me) = caller(ctx)?;
    if let Some(answered) = answer(&access, ctx, &me, statement) {
        return Some(answered.map_err(PgWireError::from));
    }
    if let Some(refused) = check_explain(ctx, statement).await {
        return Some(refused);
    }
    check_ddl(&access, ctx, &me, statement)
        .err()
        .map(|err| Err(err.into()))
}

fn is_role_statement(statement: &Statement) -> bool {
    matches!(
        statement,
        Statement::CreateRole(_)
            | Statement::AlterRole { .. }
            | Statement::Grant(_)
            | Statement::Revoke(_)
            | Statement::Drop {
                object_type: ObjectType::Role,
                ..
            }
    )
}

#[async_trait]
impl QueryHook for AccessHook {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        session_context: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        handle(session_context, statement).await
    }

    async fn handle_extended_parse_query(
        &self,
        statement: &Statement,
        _session_context: &SessionContext,
        _client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        is_role_statement(statement).then(|| placeholder_plan(Schema::empty()))
    }

    async fn handle_extended_query(
        &self,
        statement: &Statement,
        _logical_plan: &LogicalPlan,
        _params: &ParamValues,
        session_context: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        handle(session_context, statement).await
    }
}
