//! Recording the executions the gate allows, with group commit: each
//! decision hands its record to one writer thread and waits for it to be
//! durable; the writer takes every record that is waiting and writes them
//! in one transaction (one `fsync`). Under load many decisions share a
//! write, so recording costs a decision a fraction of a disk flush, and an
//! allowed execution is still never answered before its record is on disk.

use super::Catalog;
use super::store::ExecutionRecord;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, SyncSender, channel, sync_channel};

/// One record and where its outcome goes.
type Pending = (ExecutionRecord, SyncSender<Result<(), String>>);

/// Hands records to the writer.
pub struct Recorder {
    to_writer: Sender<Pending>,
}

impl Recorder {
    /// A recorder writing into `catalog` from a thread of its own.
    pub fn start(catalog: Arc<Catalog>) -> std::io::Result<Recorder> {
        let (to_writer, pending) = channel();
        std::thread::Builder::new()
            .name("gate-recorder".into())
            .spawn(move || write(&catalog, &pending))?;
        Ok(Recorder { to_writer })
    }

    /// Records `execution`, returning once it is durable (or why not).
    pub fn record(&self, execution: ExecutionRecord) -> Result<(), String> {
        let (done, outcome) = sync_channel(1);
        self.to_writer
            .send((execution, done))
            .map_err(|_| "the recorder stopped".to_owned())?;
        outcome
            .recv()
            .map_err(|_| "the recorder stopped".to_owned())?
    }
}

/// Writes what is waiting, as one batch, until no one can send any more.
fn write(catalog: &Catalog, pending: &Receiver<Pending>) {
    while let Ok(first) = pending.recv() {
        let mut batch = vec![first];
        batch.extend(pending.try_iter());
        let (records, waiting): (Vec<ExecutionRecord>, Vec<_>) = batch.into_iter().unzip();
        let outcome = catalog
            .record_executions(&records)
            .map_err(|e| e.to_string());
        for done in waiting {
            let _ = done.send(outcome.clone());
        }
    }
}
