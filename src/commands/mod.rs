//! One module per subcommand.

pub(crate) mod check;
pub(crate) mod explain;
pub(crate) mod graph;
pub(crate) mod import;
pub(crate) mod inspect;
pub(crate) mod record;
pub(crate) mod run;
pub(crate) mod schema;
pub(crate) mod test;
pub(crate) mod yaml_file;
