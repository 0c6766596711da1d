//! The step kinds and their configuration, exactly as written in YAML.
//!
//! These structs are deserialized from the spec (with positions on the fields that refer to other
//! things), serialized to JSON for cache keys and run records (positions dropped), and described as
//! JSON Schema for editors. Defaults live here, so the resolved config of a step always includes
//! them.

use indexmap::IndexMap;
use marked_yaml::Spanned;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A reference to another step's output: `step` (its default output) or `step.output`.
pub type Ref = Spanned<String>;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FileFormat {
    Csv,
    Parquet,
    Ndjson,
    /// Arrow IPC files (`.arrow`, `.feather`, `.ipc`).
    Arrow,
}

/// Read files (a path, a glob or a directory, relative to the spec's folder) into a dataset.
/// Directories named `key=value` on a file's path (hive partitioning, as Spark and Polars
/// write them) become columns: integers when every value is one, else text.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SourceStep {
    /// File path, glob (`data/*.csv.gz`, `data/**/*.parquet`) or directory (every file below
    /// it but hidden ones and `_`-prefixed markers), relative to the spec file's folder.
    #[schemars(with = "String")]
    pub path: Spanned<String>,
    /// File format; inferred from the extension when omitted.
    #[serde(default)]
    pub format: Option<FileFormat>,
    /// CSV: whether the first line holds column names.
    #[serde(default = "yes")]
    pub header: bool,
    /// Column names, in file order (required for CSV without a header).
    #[serde(default)]
    pub columns: Option<Vec<String>>,
    /// CSV: field delimiter, one character (default: tab for `.tsv` files, else comma).
    #[serde(default)]
    pub delimiter: Option<String>,
    /// CSV: lines starting with this character are skipped.
    #[serde(default)]
    pub comment: Option<String>,
    /// CSV: values matching this regular expression are read as null.
    #[serde(default)]
    pub null_regex: Option<String>,
}

impl SourceStep {
    /// A source for one file outside any spec (command-line tools): CSV with a header unless
    /// told otherwise, format from the extension unless given.
    pub fn for_file(path: &str, format: Option<FileFormat>, header: bool) -> Self {
        Self {
            path: Spanned::new(marked_yaml::Span::new_blank(), path.to_string()),
            format,
            header,
            columns: None,
            delimiter: None,
            comment: None,
            null_regex: None,
        }
    }

    /// The CSV delimiter to use: the one given, else tab for `.tsv` files, else comma.
    pub fn delimiter_byte(&self) -> u8 {
        match &self.delimiter {
            Some(d) => d.as_bytes().first().copied().unwrap_or(b','),
            None if self.path.to_ascii_lowercase().contains(".tsv") => b'\t',
            None => b',',
        }
    }
}

/// Read the result of a query (or a whole table) from PostgreSQL, MySQL/MariaDB or SQLite. The
/// query runs in the database, so its `WHERE` and column list are pushed down by construction.
/// A database source runs every time (the database may have changed); steps after it are
/// cached by the content of what it read.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DatabaseStep {
    /// `postgres://user[:password]@host[:port]/database`, `mysql://...` (MariaDB too), or
    /// `sqlite://path/to/file.db` (relative to the spec's folder). `${VAR}` is replaced from the
    /// environment when the step runs, to keep passwords out of specs (and out of cache keys).
    pub url: String,
    /// SQL for the database to run; placeholders are `$1`, `$2`... (PostgreSQL) or `?`
    /// (MySQL, SQLite). Give `query` or `table`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// A table to read whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    /// Values for the placeholders, in order. PostgreSQL converts each to the type the
    /// placeholder needs (numbers, booleans, text; cast others in SQL, e.g. `$1::text::date`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub params: Vec<String>,
    /// Rows per record batch read from the database.
    #[serde(default = "default_batch_rows")]
    pub batch_rows: usize,
}

impl DatabaseStep {
    /// The SQL to run.
    pub fn sql(&self) -> String {
        match (&self.query, &self.table) {
            (Some(q), _) => q.clone(),
            (None, Some(t)) => format!("SELECT * FROM {t}"),
            (None, None) => String::new(),
        }
    }
}

/// Consume a NATS JetStream subject as micro-batches: each run reads what has arrived (up to
/// `max_messages`, or until nothing more comes within `max_wait`), stores it as a dataset, and
/// only then acknowledges the messages — a crash before that means they are delivered again.
/// Message payloads are JSON objects, one row each. Like a database source it runs every time.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StreamStep {
    /// The NATS server, `nats://host:port` (`${VAR}` is replaced from the environment).
    pub nats: String,
    /// The JetStream stream that holds the subject.
    pub stream: String,
    /// Subject filter, e.g. `events.>`; the whole stream when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Durable consumer name: where this source's position is kept between runs.
    pub consumer: String,
    /// Most messages per run (the batch size bound).
    #[serde(default = "default_max_messages")]
    pub max_messages: usize,
    /// Stop waiting for more messages after this long without one (`2s`, `500ms`).
    #[serde(default = "default_max_wait")]
    pub max_wait: String,
}

/// Run DataFusion SQL over named inputs; each input is a table named after the step it comes from
/// (`split.train` becomes table `split_train`).
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SqlStep {
    #[schemars(with = "Vec<String>")]
    pub inputs: Vec<Ref>,
    pub query: String,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SplitMethod {
    /// Rows assigned by a seeded hash of their content: independent of row order.
    #[default]
    Random,
    /// Like random, but each value of `by` keeps the same proportions in every part.
    Stratified,
    /// Rows ordered by `by` (a time column); the first fraction gets the earliest rows.
    Time,
}

/// Split one dataset into named parts (`train`, `test`, ... in the order given).
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SplitStep {
    #[schemars(with = "String")]
    pub input: Ref,
    #[serde(default)]
    pub method: SplitMethod,
    /// Part name → fraction of rows; fractions must sum to 1.
    #[serde(default = "default_fractions")]
    pub fractions: IndexMap<String, f64>,
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Column to stratify by (`stratified`) or order by (`time`).
    #[serde(default)]
    pub by: Option<String>,
    /// Columns whose values decide a row's part (default: all). Give an id column to keep the
    /// same rows in each part when other columns are added or changed.
    #[serde(default)]
    pub key: Option<Vec<String>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    /// Binary classification, L2-regularized, solved by Newton's method.
    LogisticRegression,
    /// Least squares with an L2 penalty (ridge), solved exactly.
    LinearRegression,
    /// Gradient-boosted decision trees (histogram-based, leaf-wise, as LightGBM); the task
    /// follows `params.objective`.
    Gbdt,
    /// A random forest of histogram trees (bootstrap samples, random features per split).
    RandomForest,
    /// An online linear model (FTRL-Proximal), updated row by row; with `init_model` it
    /// continues from another step's online model on new data, as one pass over both would.
    Ftrl,
    /// k-means clustering (k-means++ seeding, Lloyd's iterations); no label. Predictions are
    /// each row's `cluster` and its `distance` to the cluster's centroid.
    Kmeans,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CvMethod {
    /// Rows shuffled (seeded) into equal folds.
    #[default]
    Kfold,
    /// Each fold keeps the label's class proportions.
    Stratified,
    /// All rows with the same `by` value stay in one fold.
    Group,
    /// Rows ordered by `by`; fold k trains on everything before its test block (expanding
    /// window, as scikit-learn's `TimeSeriesSplit`).
    Time,
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CrossValidation {
    #[serde(default = "default_folds")]
    pub folds: usize,
    #[serde(default)]
    pub method: CvMethod,
    /// The group column (`group`) or time column (`time`).
    #[serde(default)]
    pub by: Option<String>,
    #[serde(default = "default_seed")]
    pub seed: u64,
}

fn default_folds() -> usize {
    5
}

/// The settings under `params`, whose shape depends on `model`.
#[derive(Clone, Debug, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum TrainParams {
    Linear(LinearParams),
    Gbdt(Box<GbdtParams>),
    Forest(ForestParams),
    Ftrl(FtrlParams),
    Kmeans(KmeansParams),
}

/// Hyper-parameters of `model: kmeans`; defaults are scikit-learn's `KMeans` (with one seeding).
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KmeansParams {
    /// Number of clusters (scikit-learn's `n_clusters`).
    #[serde(default = "default_clusters")]
    pub clusters: usize,
    #[serde(default = "default_kmeans_iter")]
    pub max_iter: u32,
    /// Stop when the centroids' summed squared shift is below `tol` x the mean feature variance.
    #[serde(default = "default_kmeans_tol")]
    pub tol: f64,
    /// Seedings tried; the lowest inertia wins.
    #[serde(default = "one_u32")]
    pub n_init: u32,
    #[serde(default)]
    pub seed: u64,
}

fn default_clusters() -> usize {
    8
}
fn default_kmeans_iter() -> u32 {
    300
}
fn default_kmeans_tol() -> f64 {
    1e-4
}

/// Hyper-parameters of `model: ftrl` (the names of the FTRL-Proximal paper).
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FtrlParams {
    #[serde(default)]
    pub objective: ForestObjective,
    /// Per-coordinate learning rate scale.
    #[serde(default = "default_ftrl_alpha")]
    pub alpha: f64,
    #[serde(default = "one")]
    pub beta: f64,
    #[serde(default)]
    pub l1: f64,
    #[serde(default)]
    pub l2: f64,
    /// Passes over this step's rows.
    #[serde(default = "one_u32")]
    pub epochs: u32,
}

fn default_ftrl_alpha() -> f64 {
    0.1
}
fn one_u32() -> u32 {
    1
}

/// How a random forest splits a text (categorical) column.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ForestCategoricalSplits {
    /// Categories in sorted order, split like numbers: what scikit-learn's forests do with
    /// `OrdinalEncoder` codes and ranger's default.
    #[default]
    Ordinal,
    /// Categories ordered once by their mean label (ranger's `order`).
    Order,
    /// The best subset of categories at every node, as boosting does (LightGBM's).
    Partition,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ForestObjective {
    /// Boolean or 0/1 label; predictions are the trees' average class-1 frequency.
    #[default]
    Binary,
    /// Numeric label; predictions are the trees' average.
    Regression,
}

/// Hyper-parameters of `model: random_forest`; defaults are scikit-learn's.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ForestParams {
    #[serde(default)]
    pub objective: ForestObjective,
    #[serde(default = "default_rounds")]
    pub num_trees: u32,
    /// Unlimited when omitted (trees grow until leaves are pure or `min_data_in_leaf`).
    #[serde(default)]
    pub max_depth: Option<u32>,
    #[serde(default = "one_u64")]
    pub min_data_in_leaf: u64,
    /// Fraction of features tried at each split (default: sqrt(features) for binary, all for
    /// regression).
    #[serde(default)]
    pub max_features: Option<f64>,
    #[serde(default = "yes")]
    pub bootstrap: bool,
    /// How a text (categorical) column is split.
    #[serde(default)]
    pub categorical_splits: ForestCategoricalSplits,
    #[serde(default = "default_max_bin")]
    pub max_bin: usize,
    #[serde(default)]
    pub seed: u64,
    #[serde(default)]
    pub threads: usize,
}

impl Default for TrainParams {
    fn default() -> Self {
        TrainParams::Linear(LinearParams::default())
    }
}

/// `params` is read by the spec parser once `model` is known (see `parse::read_train`); while
/// the rest of the step is deserialized this accepts any value, so that `params` stays a known
/// key with its position.
impl<'de> Deserialize<'de> for TrainParams {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        serde::de::IgnoredAny::deserialize(d)?;
        Ok(TrainParams::default())
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum GbdtObjective {
    /// Log loss on a boolean or 0/1 label; predictions are probabilities.
    #[default]
    Binary,
    /// Squared error (L2).
    Regression,
    /// Absolute error; leaves are medians of the residuals.
    L1,
    /// Huber loss with threshold `alpha`.
    Huber,
    /// Pinball loss for quantile `alpha`.
    Quantile,
    /// Poisson log-likelihood for counts; predictions are means.
    Poisson,
    /// Softmax over the label's distinct values (any type); predictions are the likeliest class
    /// with every class's probability.
    Multiclass,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum GbdtMetric {
    /// ROC AUC (binary).
    Auc,
    /// Log loss (binary and multiclass).
    Logloss,
    Rmse,
    Mae,
    /// The objective's own loss (Huber, pinball, Poisson deviance).
    Loss,
}

/// Weights of the two classes in a binary objective.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum ClassWeightSpec {
    /// `balanced`: each class weighted by rows / (2 x its rows), as scikit-learn.
    Named(String),
    Explicit {
        negative: f64,
        positive: f64,
    },
}

/// Hyper-parameters of `model: gbdt`. Names and defaults are LightGBM's.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GbdtParams {
    #[serde(default)]
    pub objective: GbdtObjective,
    /// Boosting rounds (trees).
    #[serde(default = "default_rounds")]
    pub num_rounds: u32,
    #[serde(default = "default_learning_rate")]
    pub learning_rate: f64,
    #[serde(default = "default_num_leaves")]
    pub num_leaves: usize,
    /// Maximum depth of a leaf (unlimited when omitted).
    #[serde(default)]
    pub max_depth: Option<u32>,
    #[serde(default = "default_min_data_in_leaf")]
    pub min_data_in_leaf: u64,
    #[serde(default = "default_min_sum_hessian")]
    pub min_sum_hessian_in_leaf: f64,
    #[serde(default)]
    pub lambda_l1: f64,
    #[serde(default)]
    pub lambda_l2: f64,
    #[serde(default)]
    pub min_gain_to_split: f64,
    /// Value bins per numeric feature (2 to 255).
    #[serde(default = "default_max_bin")]
    pub max_bin: usize,
    /// Fraction of features each tree may use.
    #[serde(default = "one")]
    pub feature_fraction: f64,
    /// Fraction of rows each tree is grown on, redrawn every `bagging_freq` rounds (0 = off).
    #[serde(default = "one")]
    pub bagging_fraction: f64,
    #[serde(default)]
    pub bagging_freq: u32,
    #[serde(default)]
    pub seed: u64,
    /// Huber threshold or quantile level.
    #[serde(default = "default_alpha")]
    pub alpha: f64,
    /// Stop when the `validation` metric has not improved for this many rounds.
    #[serde(default)]
    pub early_stopping_rounds: Option<u32>,
    /// Metric on `validation` (default: logloss for binary, rmse for regression, mae for l1,
    /// else the objective's loss).
    #[serde(default)]
    pub metric: Option<GbdtMetric>,
    /// Feature column → 1 (prediction may only rise with it) or -1 (only fall).
    #[serde(default)]
    pub monotone: IndexMap<String, i8>,
    /// `balanced` or `{negative: W, positive: W}` (binary only).
    #[serde(default)]
    pub class_weight: Option<ClassWeightSpec>,
    /// Categorical features with at most this many categories split one-vs-rest.
    #[serde(default = "default_max_cat_to_onehot")]
    pub max_cat_to_onehot: usize,
    /// At most this many categories on the left side of a categorical split.
    #[serde(default = "default_max_cat_threshold")]
    pub max_cat_threshold: usize,
    #[serde(default = "default_cat_smooth")]
    pub cat_smooth: f64,
    #[serde(default = "default_cat_l2")]
    pub cat_l2: f64,
    /// Categories with fewer rows do not get their own place in a split.
    #[serde(default = "default_min_data_per_group")]
    pub min_data_per_group: u64,
    /// Training threads (0 = all cores). The model is the same for any number.
    #[serde(default)]
    pub threads: usize,
}

/// Settings whose every field has a serde default: an empty mapping gives them all, so the
/// defaults are written once, on the fields.
macro_rules! default_from_serde {
    ($($t:ty),*) => {$(
        impl Default for $t {
            fn default() -> Self {
                serde_json::from_value(serde_json::json!({})).unwrap_or_else(|_| unreachable!("defaults deserialize"))
            }
        }
    )*};
}

default_from_serde!(FtrlParams, ForestParams, GbdtParams, KmeansParams);

/// Hyper-parameters of the linear models.
///
/// Objective: `mean(loss) + l2 / 2 * ||w||² + l1 * ||w||₁` (intercept not penalized). In
/// scikit-learn terms, `LogisticRegression(C = 1 / (l2 * n))`, `Ridge(alpha = l2 * n)` and
/// `ElasticNet(alpha = l1 + l2, l1_ratio = l1 / (l1 + l2))` for `n` training rows. Logistic
/// regression on a label with more than two values (or text values) is multinomial (softmax).
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LinearParams {
    #[serde(default = "default_l2")]
    pub l2: f64,
    /// L1 penalty: lasso, or elastic net with `l2`. Binary logistic and linear regression only.
    #[serde(default)]
    pub l1: f64,
    /// Newton steps (default 100) or L-BFGS iterations (default 1,000).
    #[serde(default)]
    pub max_iter: Option<u32>,
    /// Stop when the largest gradient component (with `l1`: of the minimum-norm subgradient)
    /// falls below this.
    #[serde(default = "default_tol")]
    pub tol: f64,
    #[serde(default = "yes")]
    pub fit_intercept: bool,
    #[serde(default)]
    pub solver: LinearSolver,
}

impl Default for LinearParams {
    fn default() -> Self {
        Self {
            l2: default_l2(),
            l1: 0.0,
            max_iter: None,
            tol: default_tol(),
            fit_intercept: true,
            solver: LinearSolver::Auto,
        }
    }
}

/// How a linear model's weights are found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LinearSolver {
    /// Newton's method up to 256 weights, L-BFGS above; with `l1`, proximal Newton (up to 2,048
    /// weights); ridge regression exactly; multinomial models by L-BFGS.
    #[default]
    Auto,
    /// Newton's method: each step one pass with the Hessian, ~10 steps.
    Newton,
    /// L-BFGS: one or two gradient passes per iteration, for many features.
    Lbfgs,
}

/// How raw columns become model features. The fitted transforms ship inside the model.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FeatureOptions {
    /// Standardize numeric columns to zero mean and unit variance (missing values become the mean).
    #[serde(default = "yes")]
    pub standardize: bool,
    /// One-hot encode at most this many most frequent categories per text column.
    #[serde(default = "default_max_categories")]
    pub max_categories: usize,
}

impl Default for FeatureOptions {
    fn default() -> Self {
        Self { standardize: true, max_categories: default_max_categories() }
    }
}

/// A feature-engineering operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TransformOp {
    /// Fill missing values: `strategy: mean | median | most_frequent | constant` (with `value`).
    Impute,
    /// `(x - mean) / std` (population std, as scikit-learn's StandardScaler).
    Standardize,
    /// `(x - min) / (max - min)`.
    Minmax,
    /// `(x - median) / IQR`.
    Robust,
    /// `ln(1 + x)`.
    Log1p,
    /// Limit to `min` / `max`.
    Clip,
    /// Bucket index: `quantiles: k` equal-frequency buckets or explicit `bins: [edges]`.
    Bucketize,
    /// One 0/1 column `col=value` per category (`max_categories`, `unseen: ignore | error`).
    Onehot,
    /// The category's index (sorted order; `unseen` → -1 or an error).
    Ordinal,
    /// The category's share of the training rows.
    Frequency,
    /// The category's smoothed label mean, fitted out of fold on the training rows
    /// (`folds`, `smoothing`).
    Target,
    /// Hashing trick: `buckets` 0/1 columns `col#k`.
    Hash,
    /// Date/time parts (`parts: [year, month, day, hour, minute, dayofweek, dayofyear]`).
    Datetime,
    /// A new text column `a_x_b` of the `columns`' values.
    Cross,
    /// Token counts over the `max_features` most common tokens, columns `col:token`.
    Counts,
    /// TF-IDF weights (scikit-learn's TfidfVectorizer defaults), columns `col:token`.
    Tfidf,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ImputeStrategy {
    Mean,
    Median,
    MostFrequent,
    Constant,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum UnseenPolicy {
    Ignore,
    Error,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DatePartName {
    Year,
    Month,
    Day,
    Hour,
    Minute,
    Dayofweek,
    Dayofyear,
}

/// One feature-engineering step of a train step's `transforms`, applied to each of `columns`
/// (a `cross` combines them). Fitted on the training rows only; the fitted state ships in the
/// model and runs unchanged in batch scoring and serving.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TransformSpec {
    pub op: TransformOp,
    pub columns: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<ImputeStrategy>,
    /// `impute` with `strategy: constant`: the fill value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantiles: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bins: Option<Vec<f64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_categories: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unseen: Option<UnseenPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub folds: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smoothing: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buckets: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parts: Option<Vec<DatePartName>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_features: Option<usize>,
}

impl TransformSpec {
    /// The options this op reads (others are rejected when the spec is loaded).
    pub fn allowed_options(&self) -> &'static [&'static str] {
        match self.op {
            TransformOp::Impute => &["strategy", "value"],
            TransformOp::Clip => &["min", "max"],
            TransformOp::Bucketize => &["quantiles", "bins"],
            TransformOp::Onehot | TransformOp::Ordinal => &["max_categories", "unseen"],
            TransformOp::Target => &["folds", "smoothing"],
            TransformOp::Hash => &["buckets"],
            TransformOp::Datetime => &["parts"],
            TransformOp::Counts | TransformOp::Tfidf => &["max_features"],
            _ => &[],
        }
    }

    /// The options that are set.
    pub fn given_options(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        let mut add = |set: bool, name| {
            if set {
                v.push(name)
            }
        };
        add(self.strategy.is_some(), "strategy");
        add(self.value.is_some(), "value");
        add(self.min.is_some(), "min");
        add(self.max.is_some(), "max");
        add(self.quantiles.is_some(), "quantiles");
        add(self.bins.is_some(), "bins");
        add(self.max_categories.is_some(), "max_categories");
        add(self.unseen.is_some(), "unseen");
        add(self.folds.is_some(), "folds");
        add(self.smoothing.is_some(), "smoothing");
        add(self.buckets.is_some(), "buckets");
        add(self.parts.is_some(), "parts");
        add(self.max_features.is_some(), "max_features");
        v
    }
}

/// Fit feature transforms on one dataset (`fit`, default `input`) and write `input` transformed
/// (streamed batch by batch). For leakage-free target encoding inside training use a train
/// step's `transforms`: this step applies the encodings fitted on all of `fit`.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FitTransformStep {
    #[schemars(with = "String")]
    pub input: Ref,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub fit: Option<Ref>,
    /// The label column, for `target` encoding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    pub transforms: Vec<TransformSpec>,
}

/// Compare a dataset with a reference: drift of every column — PSI, Jensen–Shannon,
/// Kolmogorov–Smirnov and Wasserstein for numbers, chi-squared for text — as a `report` and as
/// metrics (`drifted_columns`, `psi_<column>`, `drift_score_<column>`), optionally per window of
/// a time column. The reference is a profile (a validate step's `profile`) or a registered
/// model (`model: NAME@ALIAS`: its training data and its predictions on them, so the server's
/// prediction logs are checked input by input and for the prediction itself). With `truth`
/// (ground truth that arrived later, keyed like the logs) the model's metrics are computed per
/// window too. `alerts` fire on any of these values and act: log, webhook, or run a pipeline.
/// Also writes the current data's `profile`.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MonitorStep {
    /// A profile (a validate or monitor step's `profile` output); or give `model`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub reference: Option<Ref>,
    /// A registered model (`NAME@ALIAS`, `NAME:VERSION` or `NAME`) whose training data and
    /// predictions are the reference. The step then runs every time (the alias may move).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The dataset to check (e.g. a source reading the server's prediction logs).
    #[schemars(with = "String")]
    pub current: Ref,
    /// Report drift per window of this time column (a date, timestamp or seconds), with `window`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    /// `hour`, `day`, `week`, a duration (`6h`), or `N rows` as `5000rows`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<String>,
    /// Ground truth for `current` (needs `model`): the `key` columns and the model's label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub truth: Option<Ref>,
    /// Columns joining `truth` to `current` [default: `request_id`, `row` — the prediction
    /// logs' request id and row within the request].
    #[serde(default = "default_truth_key")]
    pub key: Vec<String>,
    /// Fail the step (and the run) when any column drifted; otherwise drift is reported.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub fail_on_drift: bool,
    /// Rules on the monitored values and what to do when they fire.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alerts: Vec<crate::alert::AlertSpec>,
}

fn default_truth_key() -> Vec<String> {
    vec!["request_id".into(), "row".into()]
}

/// Train a model on a dataset.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TrainStep {
    #[schemars(with = "String")]
    pub input: Ref,
    pub model: ModelKind,
    /// The column to predict (boolean or 0/1 for classification; text or several values for
    /// multiclass). Every model but `kmeans` needs one.
    #[serde(default)]
    pub label: String,
    /// Feature columns; all columns but the label (and `exclude`) when omitted.
    #[serde(default)]
    pub features: Option<Vec<String>>,
    #[serde(default)]
    pub exclude: Vec<String>,
    /// A dataset with the label, scored after every round (GBDT) for `early_stopping_rounds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub validation: Option<Ref>,
    /// A GBDT model (another train step's output) to continue boosting on this step's data:
    /// its trees and feature encoding are kept and `params.num_rounds` more trees are added.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub init_model: Option<Ref>,
    /// A registered model (`NAME@ALIAS`, `NAME:VERSION` or `NAME` for the latest) to continue
    /// training from, as `init_model` does with a step's model (`gbdt`, `ftrl`): each run learns
    /// from its new rows — a stream's micro-batch, say — on top of what is registered. While
    /// nothing is registered there, the step trains from scratch. The cache key covers the
    /// version it resolves to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warm_start: Option<String>,
    /// Cross-validate before training the final model on all rows: the step's metrics gain
    /// `cv_<metric>_mean` and `cv_<metric>_std` over the folds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cv: Option<CrossValidation>,
    /// Model settings; see `LinearParams` (linear models) and `GbdtParams` (`model: gbdt`).
    #[serde(default)]
    pub params: TrainParams,
    #[serde(default)]
    pub preprocessing: FeatureOptions,
    /// Feature engineering before the model, in order (see `TransformSpec`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub transforms: Vec<TransformSpec>,
    /// Search `params` for the best model (see `TuneSpec`): the step's output is the best
    /// trial's model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tune: Option<TuneSpec>,
    /// Train data-parallel on the engine (`logistic_regression`, `linear_regression`): the
    /// feature statistics and every Newton step's gradient and Hessian are aggregates the engine
    /// computes where the data is (a cluster's executors, or in-process DataFusion), so the
    /// training rows are never gathered in one process. The model equals the one trained in
    /// one process up to floating-point rounding.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub distributed: bool,
}

impl TrainStep {
    /// `params` with some fields replaced (a trial's values), checked like the spec's own.
    pub fn params_with(&self, values: &serde_json::Map<String, serde_json::Value>) -> Result<TrainParams, String> {
        let mut json = serde_json::to_value(&self.params).map_err(|e| e.to_string())?;
        if let Some(map) = json.as_object_mut() {
            for (k, v) in values {
                map.insert(k.clone(), v.clone());
            }
        }
        let name = |e: serde_json::Error| format!("`params`: {e}");
        Ok(match &self.params {
            TrainParams::Linear(_) => TrainParams::Linear(serde_json::from_value(json).map_err(name)?),
            TrainParams::Gbdt(_) => TrainParams::Gbdt(Box::new(serde_json::from_value(json).map_err(name)?)),
            TrainParams::Forest(_) => TrainParams::Forest(serde_json::from_value(json).map_err(name)?),
            TrainParams::Ftrl(_) => TrainParams::Ftrl(serde_json::from_value(json).map_err(name)?),
            TrainParams::Kmeans(_) => TrainParams::Kmeans(serde_json::from_value(json).map_err(name)?),
        })
    }
}

/// A hyperparameter search: each trial trains the step's model with `params` overridden by
/// values drawn from `space`, and is scored on `validation` (or by `cv`'s mean). Trials,
/// their parameters, intermediate values (a GBDT's validation metric per round, for pruners)
/// and results live in the metadata store as the study `study`: an interrupted run continues it,
/// and several processes (`sluice run` on the same home) work on it together.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TuneSpec {
    /// The study's name (default `<pipeline>.<step>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub study: Option<String>,
    /// What to optimize: a metric of the trial's model on the validation data (`auc`,
    /// `log_loss`, `accuracy`, `f1`, `rmse`, `mae`, `r2`, ...). Default: `auc` for binary
    /// classification, `log_loss` for multiclass, `rmse` for regression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<String>,
    /// Default: `maximize` for auc, accuracy, precision, recall, f1 and r2; else `minimize`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<TuneDirection>,
    /// `random`, `grid`, `tpe` (default) or `cmaes`, or a mapping with `kind` and settings
    /// (`tpe`: `startup_trials`, `candidates`, `multivariate`; `cmaes`: `population`).
    #[serde(default = "default_sampler")]
    #[schemars(with = "serde_json::Value")]
    pub sampler: serde_json::Value,
    /// `none` (default), `median`, `asha` or `hyperband`, or a mapping with `kind` and settings
    /// (`median`: `startup_trials`, `warmup_steps`; `asha`: `min_resource`, `reduction_factor`;
    /// `hyperband`: `min_resource`, `max_resource`, `reduction_factor`).
    #[serde(default = "default_pruner")]
    #[schemars(with = "serde_json::Value")]
    pub pruner: serde_json::Value,
    /// Trials in the study (all runs and workers together).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trials: Option<u64>,
    /// Wall time for the search in this run (`30m`, `2h`): no trial starts after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Stop after this many trials without improving on the best.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patience: Option<u64>,
    /// Trials at once in this process (default: the number of cores; each trial's training
    /// then uses one thread).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel: Option<usize>,
    #[serde(default)]
    pub seed: u64,
    /// A trial still training after this long is stopped and marked failed (`90s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trial_timeout: Option<String>,
    /// A trial whose training would need more memory than this (`2GiB`, `512MB`) fails without
    /// running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trial_memory: Option<String>,
    /// Parameter name (a field of `params`) → its distribution.
    pub space: IndexMap<String, ParamSpace>,
}

fn default_sampler() -> serde_json::Value {
    serde_json::Value::from("tpe")
}
fn default_pruner() -> serde_json::Value {
    serde_json::Value::from("none")
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum TuneDirection {
    Minimize,
    Maximize,
}

/// One parameter's distribution: exactly one of `uniform`, `log_uniform`, `int` or `choice`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ParamSpace {
    /// `[low, high]`: a real number, uniform.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uniform: Option<[f64; 2]>,
    /// `[low, high]`: a real number, uniform on the log scale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_uniform: Option<[f64; 2]>,
    /// `[low, high]`: a whole number (with `log: true`, uniform on the log scale).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub int: Option<[i64; 2]>,
    /// The values to choose from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<Vec<serde_json::Value>>")]
    pub choice: Option<Vec<serde_json::Value>>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub log: bool,
    /// Spacing of `uniform` or `int` values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<f64>,
    /// The parameter exists only when another (`choice`) parameter has this value (or one of
    /// these values): `when: {boosting: dart}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<IndexMap<String, serde_json::Value>>")]
    pub when: Option<IndexMap<String, serde_json::Value>>,
    /// The values a `grid` sampler tries (default: every choice or whole number, else 5 points).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<Vec<serde_json::Value>>")]
    pub grid: Option<Vec<serde_json::Value>>,
}

/// `512MB`, `2GiB`, `1.5G`, `1000000` → bytes.
pub fn parse_bytes(text: &str) -> Option<u64> {
    let t = text.trim();
    let split = t.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(t.len());
    let n: f64 = t[..split].trim().parse().ok()?;
    let unit: f64 = match t[split..].trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" | "tib" => 1024.0f64.powi(4),
        _ => return None,
    };
    (n.is_finite() && n > 0.0).then_some((n * unit) as u64)
}

/// Score a model on a dataset that has the label; produces metrics and predictions.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EvaluateStep {
    #[schemars(with = "String")]
    pub model: Ref,
    #[schemars(with = "String")]
    pub input: Ref,
    /// Probability above which a binary prediction is positive.
    #[serde(default = "default_threshold")]
    pub threshold: f64,
    /// Columns to evaluate by slice: metrics per value of each, and for binary models the
    /// largest gaps between groups in positive-prediction rate
    /// (`demographic_parity_difference_<column>`) and in recall
    /// (`equal_opportunity_difference_<column>`), usable in gates.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub slices: Vec<String>,
    /// Also compute permutation importance of every input column (the main metric's loss when
    /// the column is shuffled, 5 seeded shuffles) and partial dependence of numeric columns
    /// (10 quantile points), into the metrics artifact.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub importance: bool,
}

/// What happens when a check fails.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// The step fails and prints the report; nothing is stored.
    #[default]
    Fail,
    /// Reported; rows flow on unchanged.
    Warn,
    /// Offending rows go to the `quarantine` output with the checks they failed; the others
    /// flow on. Row-level checks only (a dataset-level check under `quarantine` fails the step).
    Quarantine,
}

/// A column's type family, as expectations name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ColumnType {
    /// Any integer width, signed or not.
    Integer,
    /// Integers, floats or decimals.
    Number,
    String,
    Boolean,
    Date,
    Timestamp,
}

/// Expectations on one column. Row-level checks: `nullable: false`, `min`, `max`, `allowed`,
/// `regex`. Dataset-level checks: `type`, `unique`, `max_null_fraction`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ColumnExpectation {
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub data_type: Option<ColumnType>,
    /// `false`: every row must have a value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nullable: Option<bool>,
    /// Smallest allowed value (inclusive; numbers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// Largest allowed value (inclusive; numbers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// The only values allowed (compared as text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed: Option<Vec<String>>,
    /// Non-null values must be distinct.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unique: bool,
    /// Non-null values must match this regular expression (Rust `regex` syntax; anchor it with
    /// `^...$` to match whole values).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
    /// Largest allowed fraction of missing values (nulls, and NaN in float columns).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_null_fraction: Option<f64>,
    /// Policy for this column's checks (default: the step's `policy`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<Policy>,
}

/// A row-level check written in SQL: rows where `check` is not true (false or null) fail it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RowCheck {
    pub name: String,
    /// A DataFusion SQL boolean expression over the row's columns, e.g. `capital_loss <= capital_gain + 5000`.
    pub check: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<Policy>,
}

/// Bounds on the number of rows that flow on.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RowCount {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<Policy>,
}

/// The newest value of a date/timestamp column must be at most `max_age` old when the step runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Freshness {
    pub column: String,
    /// A duration: a number followed by `s`, `m`, `h`, `d` or `w` (`36h`, `7d`).
    pub max_age: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<Policy>,
}

impl Freshness {
    /// `max_age` in seconds, if it parses.
    pub fn max_age_seconds(&self) -> Option<f64> {
        parse_duration(&self.max_age)
    }
}

pub use sluice_core::parse_duration;

/// Checks on the dataset as a whole.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DatasetChecks {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row_count: Option<RowCount>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub freshness: Option<Freshness>,
}

impl DatasetChecks {
    pub fn is_empty(&self) -> bool {
        self.row_count.is_none() && self.freshness.is_none()
    }
}

/// A set of expectations: the body of an expectations file (what `sluice data infer-schema`
/// writes) and of a validate step.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Expectations {
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub columns: IndexMap<String, ColumnExpectation>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rows: Vec<RowCheck>,
    #[serde(default, skip_serializing_if = "DatasetChecks::is_empty")]
    pub dataset: DatasetChecks,
}

/// Check a dataset against expectations. Outputs: `data` (the rows that flow on), `quarantine`
/// (rows that failed a `quarantine` check, with a `_failed_checks` column), `report` (every
/// check with its counts and sample offending rows) and `profile` (statistics of `data`, the
/// baseline drift monitoring compares with).
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ValidateStep {
    #[schemars(with = "String")]
    pub input: Ref,
    /// An expectations file (YAML, as `sluice data infer-schema` writes it), relative to the
    /// spec's folder. Its contents become part of the step's configuration (and cache key);
    /// `columns` given inline replace the file's entry for that column, `rows` add to its list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub expectations: Option<Spanned<String>>,
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub columns: IndexMap<String, ColumnExpectation>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rows: Vec<RowCheck>,
    #[serde(default, skip_serializing_if = "DatasetChecks::is_empty")]
    pub dataset: DatasetChecks,
    /// Policy of checks that do not set their own.
    #[serde(default)]
    pub policy: Policy,
    /// Offending rows kept per check in the report.
    #[serde(default = "default_samples")]
    pub samples: usize,
}

/// Record a model in the registry as a new version of `name`, optionally moving an alias to it.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterStep {
    #[schemars(with = "String")]
    pub model: Ref,
    pub name: String,
    #[serde(default)]
    pub alias: Option<String>,
    /// An evaluate step whose metrics are attached to the version.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub metrics: Option<Ref>,
    /// Checks that must pass before `alias` moves to the new version, e.g. `roc_auc >= 0.85` or
    /// `roc_auc >= champion.roc_auc - 0.002` (the alias holder is scored on the same evaluation
    /// data). With no holder yet, comparisons with it pass. Needs `metrics`.
    #[serde(default)]
    pub gates: Vec<String>,
}

fn yes() -> bool {
    true
}
fn default_fractions() -> IndexMap<String, f64> {
    IndexMap::from([("train".to_string(), 0.8), ("test".to_string(), 0.2)])
}
fn default_seed() -> u64 {
    42
}
fn default_l2() -> f64 {
    1e-4
}
fn default_tol() -> f64 {
    1e-8
}
fn default_max_categories() -> usize {
    100
}
fn one_u64() -> u64 {
    1
}
fn one() -> f64 {
    1.0
}
fn default_rounds() -> u32 {
    100
}
fn default_learning_rate() -> f64 {
    0.1
}
fn default_num_leaves() -> usize {
    31
}
fn default_min_data_in_leaf() -> u64 {
    20
}
fn default_min_sum_hessian() -> f64 {
    1e-3
}
fn default_max_bin() -> usize {
    255
}
fn default_alpha() -> f64 {
    0.9
}
fn default_max_cat_to_onehot() -> usize {
    4
}
fn default_max_cat_threshold() -> usize {
    32
}
fn default_cat_smooth() -> f64 {
    10.0
}
fn default_cat_l2() -> f64 {
    10.0
}
fn default_min_data_per_group() -> u64 {
    100
}
fn default_batch_rows() -> usize {
    8192
}
fn default_max_messages() -> usize {
    10_000
}
fn default_max_wait() -> String {
    "2s".into()
}
fn default_samples() -> usize {
    5
}
fn default_threshold() -> f64 {
    0.5
}

impl Expectations {
    /// The document as YAML (block style; strings double-quoted), as an expectations file.
    pub fn to_yaml(&self) -> String {
        let mut out = String::new();
        // Plain data: serializing to a JSON value cannot fail.
        let value = serde_json::to_value(self).unwrap_or(serde_json::Value::Null);
        write_yaml(&mut out, &value, 0);
        out
    }
}

fn write_yaml(out: &mut String, value: &serde_json::Value, indent: usize) {
    use serde_json::Value;
    let pad = "  ".repeat(indent);
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let key = serde_json::to_string(k).unwrap_or_default();
                let key = if k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') && !k.is_empty() {
                    k.clone()
                } else {
                    key
                };
                match v {
                    Value::Object(m) if !m.is_empty() => {
                        out.push_str(&format!("{pad}{key}:\n"));
                        write_yaml(out, v, indent + 1);
                    }
                    Value::Array(a) if a.iter().any(|x| x.is_object()) => {
                        out.push_str(&format!("{pad}{key}:\n"));
                        for item in a {
                            let mut inner = String::new();
                            write_yaml(&mut inner, item, indent + 2);
                            let inner = inner.trim_start().to_string();
                            out.push_str(&format!("{pad}  - {inner}"));
                        }
                    }
                    _ => out.push_str(&format!("{pad}{key}: {}\n", flow(v))),
                }
            }
        }
        other => out.push_str(&format!("{pad}{}\n", flow(other))),
    }
}

/// A value on one line: JSON is valid YAML flow style (with spaces after commas).
fn flow(value: &serde_json::Value) -> String {
    use serde_json::Value;
    match value {
        Value::Array(items) => format!("[{}]", items.iter().map(flow).collect::<Vec<_>>().join(", ")),
        Value::Object(map) => format!(
            "{{{}}}",
            map.iter()
                .map(|(k, v)| format!("{}: {}", serde_json::to_string(k).unwrap_or_default(), flow(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        scalar => serde_json::to_string(scalar).unwrap_or_default(),
    }
}
