//! Pipeline runner: DAG, scheduling, caching and step kinds
