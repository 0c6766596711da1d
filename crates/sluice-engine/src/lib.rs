//! Data work on Apache DataFusion: sources, SQL, splits, dataset artifacts
