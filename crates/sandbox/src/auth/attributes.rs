//! What a request asks to do, in the terms authorization decides on.

/// A request's authorization attributes (kube-apiserver's `authorizer.Attributes`).
///
/// A request with `path` set is a non-resource request (`/healthz`, `/version`, ...), decided
/// on verb and path alone; otherwise it is a resource request. Empty strings in the optional
/// fields count as absent, as they do upstream.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Attributes {
    /// The API verb (`get`, `list`, `watch`, `create`, ...) or, for a non-resource request,
    /// the lower-case HTTP method.
    pub verb: String,
    /// The API group, `""` for the core group.
    pub api_group: String,
    /// The resource's plural name, e.g. `pods`.
    pub resource: String,
    /// The subresource, e.g. `log` for `pods/log`.
    pub subresource: Option<String>,
    /// The namespace; absent for cluster-scoped resources and cluster-wide lists.
    pub namespace: Option<String>,
    /// The object's name; absent for list, watch of a collection and create.
    pub name: Option<String>,
    /// The URL path of a non-resource request.
    pub path: Option<String>,
}

impl Attributes {
    /// A cluster-wide resource request; narrow it with [`Self::in_namespace`],
    /// [`Self::named`] and [`Self::with_subresource`].
    pub fn resource(
        verb: impl Into<String>,
        api_group: impl Into<String>,
        resource: impl Into<String>,
    ) -> Self {
        Attributes {
            verb: verb.into(),
            api_group: api_group.into(),
            resource: resource.into(),
            ..Attributes::default()
        }
    }

    /// A non-resource request for `path`.
    pub fn non_resource(verb: impl Into<String>, path: impl Into<String>) -> Self {
        Attributes {
            verb: verb.into(),
            path: Some(path.into()),
            ..Attributes::default()
        }
    }

    /// The same request in `namespace`.
    pub fn in_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    /// The same request for the object `name`.
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The same request for a subresource, e.g. `log` or `status`.
    pub fn with_subresource(mut self, subresource: impl Into<String>) -> Self {
        self.subresource = Some(subresource.into());
        self
    }

    /// Whether this is a resource request rather than a non-resource one.
    pub fn is_resource_request(&self) -> bool {
        self.path.is_none()
    }

    /// The namespace, `""` when absent.
    pub fn namespace_str(&self) -> &str {
        self.namespace.as_deref().unwrap_or_default()
    }

    /// The object name, `""` when absent.
    pub fn name_str(&self) -> &str {
        self.name.as_deref().unwrap_or_default()
    }

    /// The subresource, `""` when absent.
    pub fn subresource_str(&self) -> &str {
        self.subresource.as_deref().unwrap_or_default()
    }

    /// `resource/subresource`, or the resource alone, as RBAC rules and messages name it.
    pub fn combined_resource(&self) -> String {
        match self.subresource_str() {
            "" => self.resource.clone(),
            sub => format!("{}/{sub}", self.resource),
        }
    }
}
