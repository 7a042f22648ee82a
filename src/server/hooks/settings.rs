//! `SET`, `SHOW` and `RESET` of the `semsql.*` settings (model, cache, budgets, ...). They are
//! checked when set, as PostgreSQL checks its own: an unknown name is 42704, a bad value 22023,
//! an unknown model 42704. (The generic SET hook would accept anything silently.)

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::common::ParamValues;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{Expr, Reset, Set, Statement, Value};
use datafusion_postgres::hooks::HookClient;
use datafusion_postgres::QueryHook;
use pgwire::api::results::{Response, Tag};
use pgwire::api::ClientInfo;
use pgwire::error::PgWireResult;
use semsql_udfs::lm::{LmError, LmSettings};

use super::{placeholder_plan, single_text_row};
use crate::error::lm_user_error;
use crate::llm::Runtime;

#[derive(Debug)]
pub struct LmSettingsHook {
    pub runtime: Arc<Runtime>,
}

/// What a statement asks of the `semsql.*` settings.
enum Action {
    Set(String, String),
    Reset(Option<String>),
    Show(String),
}

/// The setting's name without `semsql.`, if the name is one of ours; pgvector's `hnsw.*`
/// settings keep their whole name.
fn ours(name: &str) -> Option<String> {
    let lower = name.to_ascii_lowercase();
    if lower.starts_with("hnsw.") {
        return Some(lower);
    }
    lower.strip_prefix("semsql.").map(str::to_owned)
}

fn action(statement: &Statement) -> Option<Action> {
    match statement {
        Statement::Set(Set::SingleAssignment {
            variable, values, ..
        }) => {
            let name = ours(&variable.to_string())?;
            let value = match values.as_slice() {
                [Expr::Value(value)] => match &value.value {
                    Value::SingleQuotedString(text) | Value::DoubleQuotedString(text) => {
                        text.clone()
                    }
                    Value::Number(number, _) => number.clone(),
                    Value::Boolean(flag) => flag.to_string(),
                    other => other.to_string(),
                },
                [Expr::Identifier(ident)] => ident.value.clone(),
                [other] => other.to_string(),
                _ => String::new(),
            };
            Some(Action::Set(name, value))
        }
        Statement::Reset(reset) => match &reset.reset {
            Reset::ConfigurationParameter(name) => {
                Some(Action::Reset(Some(ours(&name.to_string())?)))
            }
            // `RESET ALL` resets ours too, and then goes on to the other hooks.
            Reset::ALL => None,
        },
        Statement::ShowVariable { variable } => {
            let name = variable
                .iter()
                .map(|ident| ident.value.clone())
                .collect::<Vec<_>>()
                .join(".");
            Some(Action::Show(ours(&name)?))
        }
        _ => None,
    }
}

impl LmSettingsHook {
    fn run(&self, action: Action, ctx: &SessionContext) -> PgWireResult<Response> {
        let state = ctx.state_ref();
        let mut state = state.write();
        let settings = LmSettings::of_mut(state.config_mut().options_mut());
        match action {
            Action::Set(name, value) => {
                if name == "model"
                    && !value.is_empty()
                    && self.runtime.model(value.trim()).is_none()
                {
                    return Err(lm_user_error(LmError::undefined_model(value.trim())));
                }
                settings.set_value(&name, &value).map_err(lm_user_error)?;
                Ok(Response::Execution(Tag::new("SET")))
            }
            Action::Reset(name) => {
                let defaults = LmSettings::default();
                match name {
                    Some(name) => {
                        let default = defaults.get(&name).ok_or_else(|| {
                            lm_user_error(LmError::new(
                                "42704",
                                format!(
                                    "unrecognized configuration parameter \"{}\"",
                                    LmSettings::qualified(&name)
                                ),
                            ))
                        })?;
                        settings.set_value(&name, &default).map_err(lm_user_error)?;
                    }
                    None => {
                        *settings = LmSettings {
                            usage: settings.usage.clone(),
                            ..defaults
                        }
                    }
                }
                Ok(Response::Execution(Tag::new("RESET")))
            }
            Action::Show(name) => {
                let value = settings.get(&name).ok_or_else(|| {
                    lm_user_error(LmError::new(
                        "42704",
                        format!(
                            "unrecognized configuration parameter \"{}\"",
                            LmSettings::qualified(&name)
                        ),
                    ))
                })?;
                let value = if name == "model" && value.is_empty() {
                    self.runtime.default_model().unwrap_or("").to_owned()
                } else {
                    value
                };
                single_text_row(&LmSettings::qualified(&name), &value)
            }
        }
    }

    fn handle(
        &self,
        statement: &Statement,
        ctx: &SessionContext,
    ) -> Option<PgWireResult<Response>> {
        if let Statement::Reset(reset) = statement {
            if matches!(reset.reset, Reset::ALL) {
                // Ours first; the answer comes from the next hook.
                let _ = self.run(Action::Reset(None), ctx);
                return None;
            }
        }
        action(statement).map(|action| self.run(action, ctx))
    }
}

#[async_trait]
impl QueryHook for LmSettingsHook {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        session_context: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        self.handle(statement, session_context)
    }

    async fn handle_extended_parse_query(
        &self,
        statement: &Statement,
        _session_context: &SessionContext,
        _client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        match action(statement)? {
            Action::Show(name) => Some(placeholder_plan(Schema::new(vec![Field::new(
                LmSettings::qualified(&name),
                DataType::Utf8,
                false,
            )]))),
            _ => Some(placeholder_plan(Schema::empty())),
        }
    }

    async fn handle_extended_query(
        &self,
        statement: &Statement,
        _logical_plan: &LogicalPlan,
        _params: &ParamValues,
        session_context: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        self.handle(statement, session_context)
    }
}
