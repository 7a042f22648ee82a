//! The STATISTICS block of the database-sensitive prompt: each table the query reads, its row
//! count, and per column its type, distinct values, NULLs, minimum and maximum, so
//! the model can judge selectivity (EXISTS or IN, which side to pre-filter).

use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::common::TableReference;
use datafusion::error::Result;
use datafusion::prelude::SessionContext;

use super::results::scanned_tables;

/// Types whose minimum, maximum and distinct count mean something to a reader.
fn summarized(data_type: &DataType) -> bool {
    data_type.is_numeric()
        || data_type.is_temporal()
        || matches!(
            data_type,
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Boolean
        )
}

fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The block for the tables `sql` reads.
pub async fn statistics_block(ctx: &SessionContext, sql: &str) -> Result<String> {
    let plan = ctx.state().create_logical_plan(sql).await?;
    let mut out = String::from("STATISTICS");
    for table in scanned_tables(ctx, &plan)? {
        let reference = TableReference::from(table.clone());
        let frame = ctx.table(reference.clone()).await?;
        let fields = frame.schema().as_arrow().fields().clone();
        let mut items = vec!["count(*)".to_owned()];
        for field in fields.iter().filter(|f| summarized(f.data_type())) {
            let column = quoted(field.name());
            items.push(format!(
                "count(DISTINCT {column}), count(*) - count({column}), min({column}), \
                 max({column})"
            ));
        }
        let query = format!(
            "SELECT {} FROM {}.{}.{}",
            items.join(", "),
            quoted(&table.catalog),
            quoted(&table.schema),
            quoted(&table.table)
        );
        let batches = ctx.sql(&query).await?.collect().await?;
        let Some(batch) = batches.iter().find(|b| b.num_rows() > 0) else {
            continue;
        };
        let options = FormatOptions::default().with_null("NULL");
        let cell = |index: usize| -> Result<String> {
            Ok(ArrayFormatter::try_new(batch.column(index), &options)?
                .value(0)
                .to_string())
        };
        out.push_str(&format!("\ntable {}: {} rows", table.table, cell(0)?));
        let mut index = 1;
        for field in fields.iter() {
            if summarized(field.data_type()) {
                out.push_str(&format!(
                    "\n  {} {}: {} distinct, {} NULL, min {}, max {}",
                    field.name(),
                    field.data_type(),
                    cell(index)?,
                    cell(index + 1)?,
                    cell(index + 2)?,
                    cell(index + 3)?
                ));
                index += 4;
            } else {
                out.push_str(&format!("\n  {} {}", field.name(), field.data_type()));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_block_lists_each_table_and_column() {
        let ctx = SessionContext::new();
        for sql in [
            "CREATE TABLE orders (id INT, status TEXT, total DOUBLE)",
            "INSERT INTO orders VALUES (1, 'open', 2.5), (2, 'done', NULL), (3, 'done', 9)",
        ] {
            ctx.sql(sql).await.unwrap().collect().await.unwrap();
        }
        let block = statistics_block(&ctx, "SELECT id FROM orders WHERE status = 'open'")
            .await
            .unwrap();
        assert_eq!(
            block,
            "STATISTICS\ntable orders: 3 rows\
             \n  id Int32: 3 distinct, 0 NULL, min 1, max 3\
             \n  status Utf8View: 2 distinct, 0 NULL, min done, max open\
             \n  total Float64: 2 distinct, 1 NULL, min 2.5, max 9.0"
        );
    }
}
