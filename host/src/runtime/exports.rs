//! The functions a plugin exports (`sluice:integration/plugin`), found once per plugin.
//!
//! The generated bindings look every export up and type-check all six again on each
//! new instance; with a fresh instance per call that is a good share of a call's cost.
//! Here the exports are found by index once, their types are checked once at load
//! ([`PluginExports::check`], on a throwaway instance, with the very signatures the
//! calls use), and each call then takes only the function it needs.

use wasmtime::AsContextMut;
use wasmtime::component::{Component, ComponentExportIndex, ComponentNamedList, Instance, Lift, Lower, TypedFunc};

use super::bindings::types as wit;

/// The interface the plugin exports.
const PLUGIN_INTERFACE: &str = "sluice:integration/plugin@0.1.0";

/// Where each export of the plugin interface is, in one component.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PluginExports {
    definition: ComponentExportIndex,
    register: ComponentExportIndex,
    unregister: ComponentExportIndex,
    handler: ComponentExportIndex,
    call_action: ComponentExportIndex,
    handle_message: ComponentExportIndex,
}

/// Whether to check an export's type: once per plugin, at load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TypeCheck {
    Check,
    /// The export was checked against the same signature by [`PluginExports::check`].
    Checked,
}

type Signature<P, R> = wasmtime::Result<TypedFunc<P, R>>;

impl PluginExports {
    /// Finds the exports in `component`.
    pub fn find(component: &Component) -> anyhow::Result<PluginExports> {
        let interface = component
            .get_export_index(None, PLUGIN_INTERFACE)
            .ok_or_else(|| anyhow::anyhow!("the component does not export {PLUGIN_INTERFACE}"))?;
        let find = |name: &str| {
            component
                .get_export_index(Some(&interface), name)
                .ok_or_else(|| anyhow::anyhow!("the component's {PLUGIN_INTERFACE} has no function {name}"))
        };
        Ok(PluginExports {
            definition: find("definition")?,
            register: find("register")?,
            unregister: find("unregister")?,
            handler: find("handler")?,
            call_action: find("call-action")?,
            handle_message: find("handle-message")?,
        })
    }

    /// Checks every export's type against the signature its calls use.
    pub fn check(&self, mut store: impl AsContextMut, instance: &Instance) -> wasmtime::Result<()> {
        let check = TypeCheck::Check;
        self.definition(&mut store, instance, check)?;
        self.register(&mut store, instance, check)?;
        self.unregister(&mut store, instance, check)?;
        self.handler(&mut store, instance, check)?;
        self.call_action(&mut store, instance, check)?;
        self.handle_message(&mut store, instance, check)?;
        Ok(())
    }

    pub fn definition(
        &self,
        store: impl AsContextMut,
        instance: &Instance,
        check: TypeCheck,
    ) -> Signature<(), (wit::Definition,)> {
        typed(store, instance, self.definition, check)
    }

    pub fn register<'a>(
        &self,
        store: impl AsContextMut,
        instance: &Instance,
        check: TypeCheck,
    ) -> Signature<(&'a wit::Context,), (Result<(), wit::Error>,)> {
        typed(store, instance, self.register, check)
    }

    pub fn unregister<'a>(
        &self,
        store: impl AsContextMut,
        instance: &Instance,
        check: TypeCheck,
    ) -> Signature<(&'a wit::Context,), (Result<(), wit::Error>,)> {
        typed(store, instance, self.unregister, check)
    }

    pub fn handler<'a>(
        &self,
        store: impl AsContextMut,
        instance: &Instance,
        check: TypeCheck,
    ) -> Signature<(&'a wit::Context, &'a wit::HttpRequest), (Result<wit::HttpResponse, wit::Error>,)> {
        typed(store, instance, self.handler, check)
    }

    #[allow(clippy::type_complexity, reason = "the export's signature, spelled out once")]
    pub fn call_action<'a>(
        &self,
        store: impl AsContextMut,
        instance: &Instance,
        check: TypeCheck,
    ) -> Signature<(&'a wit::Context, &'a str, &'a str), (Result<wit::ActionResult, wit::Error>,)> {
        typed(store, instance, self.call_action, check)
    }

    #[allow(clippy::type_complexity, reason = "the export's signature, spelled out once")]
    pub fn handle_message<'a>(
        &self,
        store: impl AsContextMut,
        instance: &Instance,
        check: TypeCheck,
    ) -> Signature<
        (
            &'a wit::Context,
            &'a str,
            &'a wit::Conversation,
            &'a wit::Message,
            &'a wit::User,
        ),
        (Result<wit::Ack, wit::Error>,),
    > {
        typed(store, instance, self.handle_message, check)
    }
}

fn typed<P, R>(
    mut store: impl AsContextMut,
    instance: &Instance,
    index: ComponentExportIndex,
    check: TypeCheck,
) -> wasmtime::Result<TypedFunc<P, R>>
where
    P: ComponentNamedList + Lower,
    R: ComponentNamedList + Lift,
{
    let func = instance
        .get_func(&mut store, index)
        .ok_or_else(|| wasmtime::format_err!("the plugin's export is not a function"))?;
    match check {
        TypeCheck::Check => func.typed::<P, R>(&store),
        // SAFETY: `P` and `R` are the signature this export was checked against by
        // `PluginExports::check` when its plugin was loaded (every accessor above uses
        // one signature for both), and instances of one component share export types.
        TypeCheck::Checked => Ok(unsafe { TypedFunc::new_unchecked(func) }),
    }
}
