use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{new_empty_array, ArrayRef, StructArray};
use datafusion::arrow::buffer::NullBuffer;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Fields, Schema};
use datafusion::arrow::json::ReaderBuilder;
use datafusion::common::{exec_err, plan_err, ScalarValue};
use datafusion::error::Result;
use datafusion::logical_expr::async_udf::AsyncScalarUDFImpl;
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};
use serde_json::{json, Map, Value};

use super::{is_options_type, CallArgs, RuntimeRef};
use crate::lm::{AnswerKind, LmRuntime, LmSettings};

/// `llm_extract(prompt, arg, ..., schema) → struct`: fields the model extracts from the row,
/// as typed columns. The schema, the last argument, is a field list or a JSON schema:
///
/// ```sql
/// SELECT (llm_extract('From the plot: {0}', plot, 'hero text, year int, tags text[]')).year
/// FROM movies;
///
/// SELECT e['product'], e['refund'] FROM (SELECT llm_extract('Parse {0}', body,
///     '{"type": "object", "properties": {"product": {"type": "string"},
///       "refund": {"type": "boolean", "description": "asks for a refund"}}}') AS e
///   FROM reviews) t;
/// ```
///
/// Field types: `text`, `int`/`bigint`, `float`/`double`/`numeric`, `boolean`, and arrays of
/// them (`text[]`); in a JSON schema `string`, `integer`, `number`, `boolean` and `array` with
/// `items` (columns in the order of `"required"` when it lists them, else by name). Every
/// field is asked for and may be NULL (`null` in the answer) when the row does not say. Each answer is checked against the schema: a missing field or a value of the wrong
/// type is asked again, then fails the query naming the row (or gives NULL under
/// `SET semsql.on_llm_error = 'null'`). Fields the schema does not name are dropped. A NULL
/// argument gives NULL without a request.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct LlmExtract {
    signature: Signature,
    runtime: RuntimeRef,
}

impl LlmExtract {
    pub fn new(runtime: Arc<dyn LmRuntime>) -> Self {
        Self {
            signature: Signature::variadic_any(Volatility::Volatile),
            runtime: RuntimeRef(runtime),
        }
    }
}

const USAGE: &str = "llm_extract(prompt, arg, ..., 'name text, year int, tags text[]')";

impl ScalarUDFImpl for LlmExtract {
    fn name(&self) -> &str {
        "llm_extract"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        plan_err!("llm_extract's result type comes from its schema argument")
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let data: Vec<usize> = (0..args.arg_fields.len())
            .filter(|&i| !is_options_type(args.arg_fields[i].data_type()))
            .collect();
        if data.len() < 3 {
            return plan_err!("llm_extract needs a prompt, an argument and a schema: {USAGE}");
        }
        let schema_at = *data.last().expect("three or more");
        let schema = match args.scalar_arguments[schema_at] {
            Some(value) => schema_text(value)?,
            None => return plan_err!("llm_extract: the schema must be a constant text ({USAGE})"),
        };
        let (_, fields) = parse_schema(&schema)?;
        Ok(Arc::new(Field::new(
            self.name(),
            DataType::Struct(fields),
            true,
        )))
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        exec_err!("llm_extract runs asynchronously")
    }
}

#[async_trait]
impl AsyncScalarUDFImpl for LlmExtract {
    async fn invoke_async_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let mut call = CallArgs::of(self.name(), &args)?;
        let (Some(schema), Some(_)) = (call.args.pop(), call.names.pop()) else {
            return exec_err!("llm_extract needs a schema: {USAGE}");
        };
        let schema = match &schema {
            ColumnarValue::Scalar(value) => schema_text(value)?,
            ColumnarValue::Array(_) => {
                return exec_err!("llm_extract: the schema must be a constant text ({USAGE})")
            }
        };
        let (json_schema, fields) = parse_schema(&schema)?;
        let (instruction, rows) = call.prompt_and_rows(self.name(), args.number_rows)?;
        let task = call.options.task(
            "llm_extract",
            format!("{instruction}\nExtract the fields of the schema from the row; use null for a field the row does not give."),
            AnswerKind::Object(json_schema),
        );
        let settings = LmSettings::of(&args.config_options);
        let answers = self.runtime.0.complete_rows(&settings, &task, rows).await?;
        Ok(ColumnarValue::Array(struct_column(&answers, &fields)?))
    }
}

fn schema_text(value: &ScalarValue) -> Result<String> {
    match value {
        ScalarValue::Utf8(Some(text))
        | ScalarValue::Utf8View(Some(text))
        | ScalarValue::LargeUtf8(Some(text)) => Ok(text.clone()),
        _ => plan_err!("llm_extract: the schema must be a constant text ({USAGE})"),
    }
}

/// The answers as a struct column; a row without an answer is NULL.
fn struct_column(answers: &[Option<Value>], fields: &Fields) -> Result<ArrayRef> {
    if answers.is_empty() {
        return Ok(new_empty_array(&DataType::Struct(fields.clone())));
    }
    let schema = Arc::new(Schema::new(fields.clone()));
    let mut decoder = ReaderBuilder::new(schema).build_decoder()?;
    let rows: Vec<Value> = answers
        .iter()
        .map(|answer| answer.clone().unwrap_or_else(|| json!({})))
        .collect();
    decoder.serialize(&rows)?;
    let Some(batch) = decoder.flush()? else {
        return exec_err!("llm_extract: no rows decoded");
    };
    let nulls = NullBuffer::from(answers.iter().map(Option::is_some).collect::<Vec<bool>>());
    Ok(Arc::new(StructArray::try_new(
        fields.clone(),
        batch.columns().to_vec(),
        Some(nulls),
    )?))
}

/// A schema (a field list or a JSON schema) as the JSON schema the model is given (every
/// field required, each nullable) and as the result's fields.
pub fn parse_schema(text: &str) -> Result<(Value, Fields)> {
    let fields = if text.trim_start().starts_with('{') {
        json_schema_fields(text)?
    } else {
        field_list(text)?
    };
    if fields.is_empty() {
        return plan_err!("llm_extract: the schema names no field ({USAGE})");
    }
    let mut properties = Map::new();
    for (name, kind, description) in &fields {
        let mut property = kind.json();
        if let Some(description) = description {
            property["description"] = json!(description);
        }
        properties.insert(name.clone(), property);
    }
    let names: Vec<&String> = fields.iter().map(|(name, _, _)| name).collect();
    let schema = json!({
        "type": "object",
        "properties": properties,
        "required": names,
        "additionalProperties": false,
    });
    let arrow: Fields = fields
        .iter()
        .map(|(name, kind, _)| Field::new(name, kind.arrow(), true))
        .collect();
    Ok((schema, arrow))
}

/// A field's type.
#[derive(Debug, Clone, PartialEq)]
enum FieldKind {
    Text,
    Integer,
    Number,
    Boolean,
    List(Box<FieldKind>),
}

impl FieldKind {
    fn json(&self) -> Value {
        let scalar = |name: &str| json!({"type": [name, "null"]});
        match self {
            FieldKind::Text => scalar("string"),
            FieldKind::Integer => scalar("integer"),
            FieldKind::Number => scalar("number"),
            FieldKind::Boolean => scalar("boolean"),
            FieldKind::List(item) => {
                let mut items = item.json();
                if let Some(item_type) = items["type"].as_array().and_then(|t| t.first()).cloned() {
                    items["type"] = item_type;
                }
                json!({"type": ["array", "null"], "items": items})
            }
        }
    }

    fn arrow(&self) -> DataType {
        match self {
            FieldKind::Text => DataType::Utf8,
            FieldKind::Integer => DataType::Int64,
            FieldKind::Number => DataType::Float64,
            FieldKind::Boolean => DataType::Boolean,
            FieldKind::List(item) => DataType::new_list(item.arrow(), true),
        }
    }

    fn from_sql(name: &str) -> Option<FieldKind> {
        let name = name.trim().to_ascii_lowercase();
        if let Some(item) = name.strip_suffix("[]") {
            return match FieldKind::from_sql(item)? {
                FieldKind::List(_) => None,
                item => Some(FieldKind::List(Box::new(item))),
            };
        }
        Some(match name.as_str() {
            "text" | "varchar" | "string" | "char" => FieldKind::Text,
            "int" | "integer" | "bigint" | "int4" | "int8" | "smallint" | "int2" => {
                FieldKind::Integer
            }
            "float" | "float4" | "float8" | "double" | "double precision" | "real" | "numeric"
            | "decimal" => FieldKind::Number,
            "bool" | "boolean" => FieldKind::Boolean,
            _ => return None,
        })
    }

    fn from_json(property: &Value) -> Option<FieldKind> {
        let type_name = match &property["type"] {
            Value::String(name) => name.as_str(),
            Value::Array(names) => names
                .iter()
                .filter_map(Value::as_str)
                .find(|name| *name != "null")?,
            _ => return None,
        };
        Some(match type_name {
            "string" => FieldKind::Text,
            "integer" => FieldKind::Integer,
            "number" => FieldKind::Number,
            "boolean" => FieldKind::Boolean,
            "array" => match FieldKind::from_json(&property["items"])? {
                FieldKind::List(_) => return None,
                item => FieldKind::List(Box::new(item)),
            },
            _ => return None,
        })
    }
}

type SchemaFields = Vec<(String, FieldKind, Option<String>)>;

fn check_name(name: &str, fields: &SchemaFields) -> Result<()> {
    let valid = name
        .chars()
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_alphanumeric() || c == '_');
    if !valid {
        return plan_err!("llm_extract: {name:?} is not a valid field name");
    }
    if fields
        .iter()
        .any(|(known, _, _)| known.eq_ignore_ascii_case(name))
    {
        return plan_err!("llm_extract: the field {name:?} is given twice");
    }
    Ok(())
}

/// `'name text, year int, tags text[]'`.
fn field_list(text: &str) -> Result<SchemaFields> {
    let mut fields = SchemaFields::new();
    for entry in text.split(',') {
        let entry = entry.trim();
        let Some((name, type_name)) = entry.split_once(char::is_whitespace) else {
            return plan_err!(
                "llm_extract: {entry:?} needs a name and a type, e.g. 'year int' ({USAGE})"
            );
        };
        check_name(name, &fields)?;
        let Some(kind) = FieldKind::from_sql(type_name) else {
            return plan_err!(
                "llm_extract: unsupported field type {:?} for {name:?} (text, int, float, \
                 boolean, or an array of one of them such as text[])",
                type_name.trim()
            );
        };
        fields.push((name.to_owned(), kind, None));
    }
    Ok(fields)
}

/// `{"type": "object", "properties": {...}}`.
fn json_schema_fields(text: &str) -> Result<SchemaFields> {
    let schema: Value = match serde_json::from_str(text) {
        Ok(schema) => schema,
        Err(error) => return plan_err!("llm_extract: the schema is not valid JSON: {error}"),
    };
    let Some(properties) = schema["properties"].as_object() else {
        return plan_err!(
            "llm_extract: a JSON schema needs \"properties\", e.g. \
             {{\"type\": \"object\", \"properties\": {{\"year\": {{\"type\": \"integer\"}}}}}}"
        );
    };
    // serde_json keeps object keys sorted: the columns follow "required" when it lists them.
    let mut names: Vec<&String> = properties.keys().collect();
    if let Some(required) = schema["required"].as_array() {
        let position = |name: &String| {
            required
                .iter()
                .position(|r| r.as_str() == Some(name.as_str()))
                .unwrap_or(usize::MAX)
        };
        names.sort_by_key(|name| position(name));
    }
    let mut fields = SchemaFields::new();
    for name in names {
        let property = &properties[name];
        check_name(name, &fields)?;
        let Some(kind) = FieldKind::from_json(property) else {
            return plan_err!(
                "llm_extract: unsupported type for {name:?}: {} (string, integer, number, \
                 boolean, or an array of one of them)",
                property["type"]
            );
        };
        let description = property["description"].as_str().map(str::to_owned);
        fields.push((name.clone(), kind, description));
    }
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_lists_and_json_schemas_give_the_same_fields() {
        let (schema, fields) =
            parse_schema("hero text, year int, tags text[], ok boolean").unwrap();
        assert_eq!(fields.len(), 4);
        assert_eq!(fields[1].data_type(), &DataType::Int64);
        assert_eq!(
            fields[2].data_type(),
            &DataType::new_list(DataType::Utf8, true)
        );
        assert_eq!(
            schema["properties"]["year"]["type"],
            json!(["integer", "null"])
        );
        assert_eq!(schema["required"], json!(["hero", "year", "tags", "ok"]));
        let (_, same) = parse_schema(
            r#"{"type": "object", "properties": {"hero": {"type": "string"},
                "year": {"type": "integer"}, "tags": {"type": "array", "items": {"type": "string"}},
                "ok": {"type": ["boolean", "null"]}},
                "required": ["hero", "year", "tags", "ok"]}"#,
        )
        .unwrap();
        assert_eq!(fields, same);
    }

    #[test]
    fn bad_schemas_are_refused_clearly() {
        for (schema, message) in [
            ("year", "needs a name and a type"),
            ("year date", "unsupported field type"),
            ("a int, A text", "given twice"),
            ("1x int", "not a valid field name"),
            ("{\"properties\": 3}", "needs \"properties\""),
            ("{nope", "not valid JSON"),
            ("x int[][]", "unsupported field type"),
        ] {
            let error = parse_schema(schema).unwrap_err().to_string();
            assert!(error.contains(message), "{schema}: {error}");
        }
    }
}
