//! lackey (todo)
