//! Delivery to an Iceberg table: the same reading, buffering, transforms, conversion and
//! error output as object delivery; the converted rows are committed to the table once
//! (see [`crate::table`]).

use iceberg::table::Table;

use super::{StepError, Worker};
use crate::metrics::Metrics;
use crate::plan::{self, Format, Pipeline, SourceRecord};
use crate::schema::FieldSpec;
use crate::table::{self, Appended, Mark, TableError, TableTarget};

impl Worker {
    /// Delivers `first..=last` of `shard` to the table: whatever of it the table's
    /// watermark shows committed already is skipped.
    pub(super) async fn deliver_to_table(
        &mut self,
        shard: u32,
        first: u64,
        last: u64,
        records: Vec<SourceRecord>,
    ) -> Result<(), StepError> {
        let spec = self.entry.spec();
        let destination = spec.iceberg.clone().expect("an Iceberg destination");
        let target = table::firehose_target(&destination, self.ctx.tables.lake()).map_err(StepError::Failed)?;
        let source_id = self.source_id();
        let evolve = destination.schema_evolution_configuration.is_some_and(|s| s.enabled);
        let label = Metrics::label(self.entry.name());
        let mut rounds = 0;
        loop {
            rounds += 1;
            if rounds > table::COMMIT_ATTEMPTS_MAX {
                return Err(StepError::Failed("the table kept changing while the delivery was planned".into()));
            }
            let table = self.open_table(&target, &records).await?;
            let mark_key = Mark::new(&source_id, shard, first, last).key;
            let watermark = table::watermark(&table, &mark_key);
            let pending: Vec<SourceRecord> =
                records.iter().filter(|r| watermark.is_none_or(|w| r.sequence > w)).cloned().collect();
            let Some(range_first) = pending.first().map(|r| r.sequence) else {
                tracing::info!(delivery_stream = %spec.name, shard, first, last, "range already committed to the table; skipped");
                return Ok(());
            };
            if evolve && self.entry.transform().is_none() {
                let new = new_columns(&table, &pending);
                if !new.is_empty() {
                    tracing::info!(delivery_stream = %spec.name, columns = new.len(), "new fields: adding nullable columns to the table");
                    self.ctx.tables.add_columns(&target, &table, &new).await.map_err(failed)?;
                    self.table_pipeline = None;
                    continue;
                }
            }
            let pipeline = self.table_pipeline(&table)?;
            let now = self.ctx.clock.now_ms();
            let (plan, planned_records) =
                super::plan_off_thread(&pipeline, shard, range_first, last, pending, now, None).await?;
            self.planning_finished(shard).await?;
            let mut batches = Vec::new();
            for object in plan.objects {
                if object.error_output_type.is_none() {
                    batches.extend(object.batches);
                } else {
                    self.write(&pipeline, shard, range_first, last, &planned_records, object).await?;
                }
            }
            if batches.is_empty() {
                return Ok(());
            }
            let mark = Mark::new(&source_id, shard, range_first, last);
            match self.ctx.tables.append(&target, table, &mark, watermark, batches).await {
                Ok(Appended::Committed { rows, files, bytes }) => {
                    self.ctx.metrics.delivery_success.get_or_create(&label).inc();
                    self.ctx.metrics.delivered_bytes.get_or_create(&label).inc_by(bytes);
                    self.ctx.metrics.delivered_records.get_or_create(&label).inc_by(plan.delivered as u64);
                    self.ctx.metrics.dropped_records.get_or_create(&label).inc_by(plan.dropped as u64);
                    tracing::debug!(delivery_stream = %spec.name, shard, first = range_first, last, rows, files, "committed to the table");
                    return Ok(());
                }
                Ok(Appended::Superseded { watermark }) => {
                    tracing::info!(delivery_stream = %spec.name, shard, ?watermark, "another deliverer committed this range; planning again");
                }
                Err(TableError::SchemaChanged) => self.table_pipeline = None,
                Err(e) => {
                    self.ctx.metrics.delivery_failures.get_or_create(&label).inc();
                    return Err(failed(e));
                }
            }
        }
    }

    /// Who delivers: the delivery stream and its source's incarnation (a source deleted and
    /// created again starts its sequence numbers over, so it gets new watermarks).
    fn source_id(&self) -> String {
        let incarnation = self.source().map_or(0, |s| s.incarnation());
        format!("{}.{incarnation:x}", self.entry.name())
    }

    /// The table, created when missing and creation is on: columns from the delivery's
    /// schema, else inferred from `records` (and kept as the delivery's schema).
    async fn open_table(&mut self, target: &TableTarget, records: &[SourceRecord]) -> Result<Table, StepError> {
        if let Some(t) = self.ctx.tables.load(target).await.map_err(failed)? {
            return Ok(t);
        }
        if !target.create {
            return Err(StepError::Failed(format!(
                "Iceberg.NoSuchTable: table {}.{} does not exist and TableCreationConfiguration is not enabled",
                target.namespace, target.table
            )));
        }
        let fields = match self.entry.spec().schema {
            Some(f) => f,
            None => {
                let sample = &records[..records.len().min(super::INFER_RECORDS_MAX)];
                let fields = crate::schema::infer(sample.iter().map(|r| r.data.as_slice()))
                    .ok_or_else(|| StepError::Failed("no JSON object to infer the table's columns from".into()))?;
                let fields = self.fix_schema(fields).await?;
                self.entry.update(|s| s.schema = Some(fields.clone())).map_err(|e| StepError::Failed(e.to_string()))?;
                fields
            }
        };
        self.ctx.tables.create(target, &fields).await.map_err(failed)
    }

    /// The pipeline converting to the current columns of the delivery's table (created when
    /// missing, as [`Worker::deliver_to_table`] would).
    pub(super) async fn current_table_pipeline(&mut self, records: &[SourceRecord]) -> Result<Pipeline, StepError> {
        let destination = self.entry.spec().iceberg.expect("an Iceberg destination");
        let target = table::firehose_target(&destination, self.ctx.tables.lake()).map_err(StepError::Failed)?;
        let table = self.open_table(&target, records).await?;
        self.table_pipeline(&table)
    }

    /// The pipeline converting to the table's current columns.
    fn table_pipeline(&mut self, table: &Table) -> Result<Pipeline, StepError> {
        let spec = self.entry.spec();
        let key = (spec.version, table::schema_id(table));
        if let Some((v, s, p)) = &self.table_pipeline {
            if (*v, *s) == key {
                return Ok(p.clone());
            }
        }
        let schema = table::arrow_schema(table).map_err(failed)?;
        let p = plan::build(&spec, Some(schema), self.entry.transform()).map_err(StepError::Failed)?;
        debug_assert!(matches!(p.format, Format::Table(_)));
        self.table_pipeline = Some((key.0, key.1, p.clone()));
        Ok(p)
    }
}

fn failed(e: TableError) -> StepError {
    StepError::Failed(e.to_string())
}

/// Fields of `records` that are not columns of the table, as nullable columns.
fn new_columns(table: &Table, records: &[SourceRecord]) -> Vec<FieldSpec> {
    let sample = &records[..records.len().min(super::INFER_RECORDS_MAX)];
    let Some(fields) = crate::schema::infer(sample.iter().map(|r| r.data.as_slice())) else { return Vec::new() };
    fields
        .into_iter()
        .filter(|f| !table::has_column(table, &f.name) && !table::has_column(table, &f.name.to_ascii_lowercase()))
        .map(|f| FieldSpec { nullable: true, ..f })
        .collect()
}
