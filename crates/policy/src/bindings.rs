//! Every `bindgen!` of the host, generated from `wit/` in one place.
//!
//! The `host` interface and the shared `types` are generated once (in
//! [`common`]) and reused by each decision's world through `with`, so there
//! is one `Host` trait to implement and one `Event` type to build.

#![allow(missing_docs, clippy::all)]

/// The host's side of the contract: the `host` import every world shares,
/// the shared `types`, and the optional `settings` export.
pub mod common {
    wasmtime::component::bindgen!({
        inline: "
            package plumbline:host-side;
            world common {
                import plumbline:policy/types@0.1.0;
                import plumbline:policy/host@0.1.0;
                export plumbline:policy/settings@0.1.0;
            }
        ",
        path: "../../wit",
    });
}

macro_rules! decision_world {
    ($module:ident, $world:literal $(, $interface:literal => $path:path)*) => {
        #[doc = concat!("The `", $world, "` world.")]
        pub mod $module {
            wasmtime::component::bindgen!({
                path: "../../wit",
                world: $world,
                with: {
                    "plumbline:policy/host": super::common::plumbline::policy::host,
                    $($interface: $path,)*
                },
            });
        }
    };
}

decision_world!(sanitizer, "sanitizer");
decision_world!(matcher, "matcher", "plumbline:policy/types" => super::common::plumbline::policy::types);
decision_world!(schema_rule, "schema-rule", "plumbline:policy/types" => super::common::plumbline::policy::types);
decision_world!(drift_gate, "drift-gate", "plumbline:policy/types" => super::common::plumbline::policy::types);

/// The host's CEL sandbox (`wit/cel`): not a plugin contract.
pub mod cel_evaluator {
    wasmtime::component::bindgen!({
        path: "../../wit/cel",
        world: "evaluator",
    });
}

pub use common::exports::plumbline::policy::settings::GuestIndices as SettingsIndices;
pub use common::plumbline::policy::host::{Host, Level};
pub use common::plumbline::policy::types::{Event, Operation, Target, Verdict, Violation};
