//! DRM systems a tenant defines (Irdeto, Conax, Verimatrix, regional DRMs, or its own Nagra
//! PRM signaling): `[[tenants.X.drm_systems]]` in the configuration file and
//! `/admin/v1/tenants/{id}/drm-systems/{name}` in the admin API.
//!
//! Each definition is checked once, when the tenant is prepared ([`DrmCatalog::build`]), into
//! a [`DrmDefinition`] whose rendering cannot fail. Every key interface then resolves a
//! system id through the tenant's catalogue ([`DrmCatalog::resolve`]): the tenant's
//! definitions first (a definition with `override = true` replaces a built-in system's
//! signaling), then the systems keyplex builds in. `prm_template` is an alias of a definition
//! overriding Nagra PRM.

use std::sync::Arc;

use keyplex_drm::define::{DefinitionText, DrmDefinition, DrmIdentity};
use keyplex_drm::system::DrmSystem;
use serde::{Deserialize, Serialize};

use crate::config::{LicenceConfig, PrmTemplate, TenantConfig, UPSTREAM_NAMES};
use crate::registry::Source;

/// Formats of the GET-style forms (`/cpix/{format}/…`, `/cpix/anevia/{format}/…`) a
/// definition can join.
pub const FORMATS: [&str; 2] = ["dash", "hls"];

/// The name `prm_template` defines its Nagra PRM system under.
pub const PRM_TEMPLATE_NAME: &str = "nagra-prm";

/// One DRM system definition, as written in `[[tenants.X.drm_systems]]` and sent to
/// `PUT /admin/v1/tenants/{id}/drm-systems/{name}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "name": "irdeto",
    "system_id": "80a6be7e-1448-4c37-9e70-d5aebe04c8d2",
    "pssh_version": 1,
    "pssh_data": "{kid_base64}",
    "pssh_data_encoding": "utf8",
    "dash_value": "Irdeto",
    "la_url": "https://licence.irdeto.example/"
}))]
pub struct DrmSystemConfig {
    /// `[a-z0-9][a-z0-9_-]*`, at most 64 characters: how the admin API, the CLI
    /// (`keyplex client cpix --drm name`, or `--drm name:system-id`), the licence route
    /// (`/{tenant}/licences/{name}`, `[tenants.x.licence] upstream.<name>`) and logs name the
    /// system. In a `PUT` it
    /// may be left out (the path names it).
    #[serde(default)]
    pub name: String,
    /// The DASH-IF system id, `8-4-4-4-12` hexadecimal digits.
    pub system_id: String,
    /// The definition replaces the signaling of the built-in system with this id (Nagra
    /// PRM's, say). Without it a built-in id is refused.
    #[serde(rename = "override", default, skip_serializing_if = "is_false")]
    pub override_builtin: bool,
    /// 0, or 1 (a v1 box lists the key ids).
    #[serde(default)]
    pub pssh_version: u8,
    /// Template of the PSSH box's data: `{kid}`, `{kid_hex}`, `{kid_base64}`,
    /// `{kid_base64url}`, `{content_id}`, `{content_id_base64}`, `{period}`, `{track_type}`,
    /// `{la_url}`; `{{` and `}}` are literal braces. Empty: a box without data.
    #[serde(default)]
    pub pssh_data: String,
    /// How the expanded template becomes bytes: `utf8` (default), `base64` or `hex`. In
    /// base64 and hex the literal text must decode on its own and only `{kid_base64}`,
    /// `{content_id_base64}` (base64) or `{kid_hex}` (hex) may appear.
    #[serde(default = "default_encoding")]
    pub pssh_data_encoding: String,
    /// `ContentProtection@value` and CPIX `DRMSystem@name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dash_value: Option<String>,
    /// HLS `KEYFORMAT`: the system has HLS signaling (cbcs and cenc) only when this is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hls_keyformat: Option<String>,
    /// Template of the HLS key URI (the placeholders of `pssh_data`, and `{pssh}` and
    /// `{pssh_data}`: base64 of the box and of its data). Default: the box as a data URI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hls_uri: Option<String>,
    /// The system's licence URL, available to templates as `{la_url}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub la_url: Option<String>,
    /// Template of the whole DASH `<ContentProtection>` element (the NAGRA interface's
    /// `contentProtection`). Default: the standard element around the PSSH box.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_protection: Option<String>,
    /// GET-style forms whose answers include this system: `dash`, `hls` (default: none). On
    /// an override, a form that answers the overridden system anyway keeps answering it
    /// once, with this signaling, whatever `formats` says.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub formats: Vec<String>,
}

fn default_encoding() -> String {
    "utf8".to_owned()
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if passes a reference
const fn is_false(b: &bool) -> bool {
    !*b
}

impl DrmSystemConfig {
    /// The checked definition; `Err` says what is wrong, naming the system.
    pub fn definition(&self) -> Result<DrmDefinition, String> {
        for format in &self.formats {
            if !FORMATS.contains(&format.as_str()) {
                return Err(format!(
                    "DRM system definition {:?}: formats: {:?} is not one of {}",
                    self.name,
                    keyplex_types::truncate_chars(format, 32),
                    FORMATS.join(", ")
                ));
            }
        }
        if self.hls_keyformat.is_none() && self.formats.iter().any(|f| f == "hls") {
            return Err(format!(
                "DRM system definition {:?}: formats lists hls, but the system has no HLS signaling (set hls_keyformat)",
                self.name
            ));
        }
        DrmDefinition::new(&DefinitionText {
            name: &self.name,
            system_id: &self.system_id,
            override_builtin: self.override_builtin,
            pssh_version: self.pssh_version,
            pssh_data: &self.pssh_data,
            pssh_data_encoding: &self.pssh_data_encoding,
            dash_value: self.dash_value.as_deref(),
            hls_keyformat: self.hls_keyformat.as_deref(),
            hls_uri: self.hls_uri.as_deref(),
            la_url: self.la_url.as_deref(),
            content_protection: self.content_protection.as_deref(),
        })
        .map_err(|e| e.to_string())
    }

    /// `prm_template` as the definition it stands for: a v0 box with the template's data
    /// (base64), its `ContentProtection` and HLS key URI, and HLS signaling with its
    /// `KEYFORMAT` (default `urn:uuid:<PRM id>`), as `prm_template` always had.
    pub fn from_prm_template(template: &PrmTemplate) -> Self {
        let prm = DrmSystem::NagraPrm;
        Self {
            name: PRM_TEMPLATE_NAME.to_owned(),
            system_id: prm.system_id().hyphenated().to_string(),
            override_builtin: true,
            pssh_version: 0,
            pssh_data: template.pssh_data_base64.trim().to_owned(),
            pssh_data_encoding: "base64".to_owned(),
            dash_value: Some(prm.dash_value().to_owned()),
            hls_keyformat: Some(
                template
                    .hls_keyformat
                    .clone()
                    .unwrap_or_else(|| prm.scheme_id_uri()),
            ),
            hls_uri: template.hls_key_uri.clone(),
            la_url: None,
            content_protection: template.content_protection.clone(),
            formats: Vec::new(),
        }
    }
}

/// One defined system of a tenant.
#[derive(Debug)]
pub struct DefinedSystem {
    pub config: DrmSystemConfig,
    pub definition: Arc<DrmDefinition>,
    pub source: Source,
}

/// A tenant's defined DRM systems, checked: unique names and system ids.
#[derive(Debug, Default)]
pub struct DrmCatalog {
    systems: Vec<DefinedSystem>,
}

impl DrmCatalog {
    /// The tenant's definitions: the file's `drm_systems`, those of the admin API, and
    /// `prm_template` (an alias). Duplicate names or system ids are refused.
    pub fn build(config: &TenantConfig) -> Result<Self, String> {
        let mut catalog = Self::default();
        for system in &config.drm_systems {
            catalog.add(system.clone(), Source::Config)?;
        }
        for system in &config.extra_drm_systems {
            catalog.add(system.clone(), Source::Admin)?;
        }
        if let Some(template) = &config.prm_template {
            let prm = DrmSystem::NagraPrm.system_id();
            if catalog
                .systems
                .iter()
                .any(|s| s.definition.system_id() == prm)
            {
                return Err(
                    "prm_template and a drm_systems entry both define Nagra PRM: prm_template is an alias of such an entry, keep one"
                        .into(),
                );
            }
            let config = DrmSystemConfig::from_prm_template(template);
            catalog
                .add(config, Source::Config)
                .map_err(|e| format!("prm_template: {e}"))?;
        }
        Ok(catalog)
    }

    /// Adds a definition after checking it against the others.
    pub fn add(&mut self, config: DrmSystemConfig, source: Source) -> Result<(), String> {
        let definition = config.definition()?;
        if self.systems.iter().any(|s| s.config.name == config.name) {
            return Err(format!("DRM system {:?} is defined twice", config.name));
        }
        if let Some(other) = self
            .systems
            .iter()
            .find(|s| s.definition.system_id() == definition.system_id())
        {
            return Err(format!(
                "DRM systems {:?} and {:?} have the same system id {}",
                other.config.name,
                config.name,
                definition.system_id()
            ));
        }
        self.systems.push(DefinedSystem {
            config,
            definition: Arc::new(definition),
            source,
        });
        Ok(())
    }

    /// The system a request names by id: the tenant's definition, else a built-in system.
    pub fn resolve(&self, system_id: &uuid::Uuid) -> Option<DrmIdentity> {
        self.defined(system_id)
            .map(|d| DrmIdentity::Defined(d.definition.clone()))
            .or_else(|| DrmSystem::from_system_id(system_id).map(DrmIdentity::BuiltIn))
    }

    /// `drm` with the tenant's override applied (a built-in system the tenant redefined).
    pub fn apply(&self, drm: &DrmIdentity) -> DrmIdentity {
        match drm {
            DrmIdentity::BuiltIn(system) => self.defined(&system.system_id()).map_or_else(
                || drm.clone(),
                |d| DrmIdentity::Defined(d.definition.clone()),
            ),
            DrmIdentity::Defined(_) => drm.clone(),
        }
    }

    /// The definitions that join a GET-style form of `format` (`dash`, `hls`) whose built-in
    /// systems are `builtin`, in order: those listing the format. An override joins too
    /// (Nagra PRM, which no form answers by default, say), unless the form answers the system
    /// it overrides anyway — then it is answered once, with the override's signaling
    /// ([`Self::apply`]), whatever its `formats`.
    pub fn for_format(&self, format: &str, builtin: &[DrmSystem]) -> Vec<DrmIdentity> {
        self.systems
            .iter()
            .filter(|s| s.config.formats.iter().any(|f| f == format))
            .filter(|s| {
                s.definition
                    .overrides()
                    .is_none_or(|system| !builtin.contains(&system))
            })
            .map(|s| DrmIdentity::Defined(s.definition.clone()))
            .collect()
    }

    /// Whether `[tenants.x.licence] upstream.<name>` names one of the tenant's DRM systems:
    /// the DRM of a built-in proxy route ([`UPSTREAM_NAMES`]) or a definition's name
    /// (`/{tenant}/licences/{name}`).
    pub fn names_drm(&self, upstream: &str) -> bool {
        UPSTREAM_NAMES.contains(&upstream) || self.by_name(upstream).is_some()
    }

    /// The names under `[tenants.x.licence] upstream` that name none of the tenant's DRM
    /// systems (their licence route answers 404).
    pub fn undefined_upstreams<'a>(&self, licence: Option<&'a LicenceConfig>) -> Vec<&'a str> {
        licence
            .iter()
            .flat_map(|l| l.upstream.keys())
            .map(String::as_str)
            .filter(|name| !self.names_drm(name))
            .collect()
    }

    pub fn by_name(&self, name: &str) -> Option<&DefinedSystem> {
        self.systems.iter().find(|s| s.config.name == name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &DefinedSystem> {
        self.systems.iter()
    }

    fn defined(&self, system_id: &uuid::Uuid) -> Option<&DefinedSystem> {
        self.systems
            .iter()
            .find(|s| s.definition.system_id() == *system_id)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn tenant_config(toml_text: &str) -> Result<TenantConfig, String> {
        let config: TenantConfig = toml::from_str(toml_text).map_err(|e| e.to_string())?;
        config.validate()?;
        Ok(config)
    }

    const IRDETO: &str = r#"
[[drm_systems]]
name = "irdeto"
system_id = "80a6be7e-1448-4c37-9e70-d5aebe04c8d2"
pssh_version = 1
pssh_data = "{kid_base64}"
pssh_data_encoding = "utf8"
dash_value = "Irdeto"
hls_keyformat = "com.irdeto.example"
hls_uri = "skd://{kid_hex}"
la_url = "https://irdeto.example/licence"
formats = ["dash"]
"#;

    #[test]
    fn the_issue_example_loads_and_resolves_before_built_ins() {
        let config = tenant_config(IRDETO).unwrap();
        let catalog = DrmCatalog::build(&config).unwrap();
        let id = uuid::Uuid::parse_str("80a6be7e-1448-4c37-9e70-d5aebe04c8d2").unwrap();
        assert!(matches!(
            catalog.resolve(&id),
            Some(DrmIdentity::Defined(d)) if d.name() == "irdeto"
        ));
        assert_eq!(
            catalog.resolve(&DrmSystem::Widevine.system_id()),
            Some(DrmIdentity::BuiltIn(DrmSystem::Widevine))
        );
        assert_eq!(catalog.for_format("dash", &[]).len(), 1);
        assert!(catalog.for_format("hls", &[]).is_empty());
        assert_eq!(
            catalog.resolve(&uuid::Uuid::from_u128(1)),
            None,
            "an undefined id stays unknown"
        );
    }

    #[test]
    fn the_loader_refuses_with_clear_messages() {
        for (bad, says) in [
            (
                IRDETO.replace("80a6be7e-1448-4c37-9e70-d5aebe04c8d2", "80a6be7e-1448"),
                "is not a DRM system id",
            ),
            (
                IRDETO.replace(
                    "80a6be7e-1448-4c37-9e70-d5aebe04c8d2",
                    "adb41c24-2dbf-4a6d-958b-4457c0d27b95",
                ),
                "set override = true",
            ),
            (
                IRDETO.replace("{kid_base64}", "{kid_b64}"),
                "unknown placeholder {kid_b64}",
            ),
            (
                IRDETO.replace("[\"dash\"]", "[\"smooth\"]"),
                "formats: \"smooth\" is not one of dash, hls",
            ),
            (format!("{IRDETO}{IRDETO}"), "defined twice"),
            (
                format!("{IRDETO}{}", IRDETO.replace("\"irdeto\"", "\"irdeto2\"")),
                "have the same system id",
            ),
            (
                format!(
                    "prm_template = {{ pssh_data_base64 = \"UFJN\" }}\n{}",
                    IRDETO
                        .replace(
                            "80a6be7e-1448-4c37-9e70-d5aebe04c8d2",
                            "adb41c24-2dbf-4a6d-958b-4457c0d27b95"
                        )
                        .replace("pssh_version = 1", "pssh_version = 1\noverride = true")
                ),
                "prm_template and a drm_systems entry both define Nagra PRM",
            ),
        ] {
            let err = tenant_config(&bad).unwrap_err();
            assert!(err.contains(says), "{err:?} should say {says:?}");
        }
    }

    #[test]
    fn an_override_joins_the_forms_it_lists_that_do_not_answer_its_system_already() {
        let config = tenant_config(
            r#"
[[drm_systems]]
name = "my-prm"
system_id = "adb41c24-2dbf-4a6d-958b-4457c0d27b95"
override = true
pssh_data = "prm:{kid}"
hls_keyformat = "urn:uuid:adb41c24-2dbf-4a6d-958b-4457c0d27b95"
formats = ["dash", "hls"]

[[drm_systems]]
name = "my-widevine"
system_id = "edef8ba9-79d6-4ace-a3c8-27dcd51d21ed"
override = true
pssh_data = "wv:{kid}"
formats = ["dash"]
"#,
        )
        .unwrap();
        let catalog = DrmCatalog::build(&config).unwrap();
        let names = |format: &str, builtin: &[DrmSystem]| -> Vec<String> {
            catalog
                .for_format(format, builtin)
                .iter()
                .map(|d| match d {
                    DrmIdentity::Defined(d) => d.name().to_owned(),
                    DrmIdentity::BuiltIn(s) => format!("{s:?}"),
                })
                .collect()
        };
        // A form without PRM gains it; one with Widevine answers Widevine once (overridden).
        assert_eq!(names("dash", &[DrmSystem::Widevine]), ["my-prm"]);
        assert_eq!(names("dash", &[]), ["my-prm", "my-widevine"]);
        assert_eq!(names("hls", &[DrmSystem::Widevine]), ["my-prm"]);
        assert!(names("dash", &[DrmSystem::Widevine, DrmSystem::NagraPrm]).is_empty());
    }

    #[test]
    fn prm_template_is_an_alias_of_an_override() {
        let config = tenant_config(
            "prm_template = { pssh_data_base64 = \"UFJN\", hls_key_uri = \"prm://{kid}\" }",
        )
        .unwrap();
        let catalog = DrmCatalog::build(&config).unwrap();
        let prm = catalog.by_name(PRM_TEMPLATE_NAME).unwrap();
        assert_eq!(prm.definition.overrides(), Some(DrmSystem::NagraPrm));
        assert!(matches!(
            catalog.apply(&DrmIdentity::BuiltIn(DrmSystem::NagraPrm)),
            DrmIdentity::Defined(_)
        ));
        assert_eq!(
            catalog.apply(&DrmIdentity::BuiltIn(DrmSystem::Widevine)),
            DrmIdentity::BuiltIn(DrmSystem::Widevine)
        );
    }
}
