//! The Job renderer: a step PodSpec wrapped into a batch/v1 Job through handlebars.
