//! The service HTTP layer: routes, handlers and errors mapped to stable codes.
