//! Plugins built against `moat:plugin@0.1.0` keep working: what they
//! describe and return is read as the current contract's types, which hold
//! everything 0.1.0 could say.

use super::bindings::Pre;
use super::bindings::exports::moat::plugin::tools as current;
use super::bindings::moat::plugin::log::Level;
use super::bindings::moat::plugin::types as now;
use super::bindings::v0_1::exports::moat::plugin::tools as old_tools;
use super::bindings::v0_1::moat::plugin::log::{Host as OldLogHost, Level as OldLevel};
use super::bindings::v0_1::moat::plugin::types as old;
use super::state::CallState;

impl OldLogHost for CallState {
    fn log(&mut self, level: OldLevel, message: String) {
        let level = match level {
            OldLevel::Trace => Level::Trace,
            OldLevel::Debug => Level::Debug,
            OldLevel::Info => Level::Info,
            OldLevel::Warn => Level::Warn,
            OldLevel::Error => Level::Error,
        };
        super::bindings::moat::plugin::log::Host::log(self, level, message);
    }
}

/// A 0.1.0 tool description.
pub(super) fn tool(t: old_tools::Tool) -> current::Tool {
    let a = t.annotations;
    current::Tool {
        name: t.name,
        title: t.title,
        description: t.description,
        input_schema: t.input_schema,
        output_schema: t.output_schema,
        annotations: now::Annotations {
            read_only: a.read_only,
            destructive: a.destructive,
            idempotent: a.idempotent,
            open_world: a.open_world,
        },
    }
}

/// A 0.1.0 call's answer.
pub(super) fn answer(
    answer: Result<old::CallResult, old_tools::CallError>,
) -> Result<now::CallResult, current::CallError> {
    match answer {
        Ok(result) => Ok(now::CallResult {
            content: result
                .content
                .into_iter()
                .map(|c| now::Content {
                    kind: match c {
                        old::Content::Text(t) => now::ContentKind::Text(t),
                        old::Content::Image(i) => now::ContentKind::Image(now::Image {
                            mime_type: i.mime_type,
                            data: i.data,
                        }),
                    },
                    annotations: None,
                })
                .collect(),
            structured: result.structured,
            is_error: result.is_error,
        }),
        Err(old::CallError::UnknownTool(t)) => Err(current::CallError::UnknownTool(t)),
        Err(old::CallError::InvalidArguments(m)) => Err(current::CallError::InvalidArguments(m)),
        Err(old::CallError::Failed(m)) => Err(current::CallError::Failed(m)),
    }
}

/// Which contract a linked plugin speaks.
pub(super) fn pre(
    instance_pre: wasmtime::component::InstancePre<CallState>,
) -> Result<Pre, String> {
    match super::bindings::CurrentPre::new(instance_pre.clone()) {
        Ok(pre) => Ok(Pre::Current(pre)),
        Err(current) => super::bindings::v0_1::PluginPre::new(instance_pre)
            .map(Pre::V0_1)
            .map_err(|_| format!("{current:#}")),
    }
}
