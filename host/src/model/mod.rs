//! The plain data every stage shares. Stages hand each other these values,
//! never their own internals.

mod event;

pub use event::{Event, Operation, Target};
