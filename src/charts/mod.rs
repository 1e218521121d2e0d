//! The console's one chart renderer: pure functions that turn chart data ([`LineData`],
//! [`BarData`], [`DistributionData`]) into geometry ([`LineChart`], [`BarChart`],
//! [`DistributionChart`]: coordinates, axis ticks and labels worked out here), which the askama
//! templates under `templates/charts/` draw as inline SVG. No JavaScript, no external asset.
//!
//! Every chart is readable without colour: each series has its own marker shape and dash pattern
//! (bars their own hatching) and a direct text label, and every band or bar carries its name. Each
//! chart carries its text alternative, a table of exactly its data, and each data type's `csv()`
//! writes exactly the same values: the drawing, the table and the CSV export come from one value.
//! A chart without data says so instead of drawing empty axes.

// Positions come from counts of points, bars and parts, far below 2^52.
#![allow(clippy::cast_precision_loss)]

use std::fmt::Write as _;

/// Width and height of every chart's SVG view box.
pub const WIDTH: f64 = 640.0;
pub const HEIGHT: f64 = 260.0;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 520.0;
const TOP: f64 = 16.0;
const BOTTOM: f64 = 220.0;
/// The most x-axis labels drawn (every label stays in the table).
const MAX_X_LABELS: usize = 8;

/// The marker shapes, dash patterns and CSS classes given to series in order.
const DASHES: [&str; 6] = ["", "6 3", "2 3", "8 3 2 3", "1 2", "10 4"];
const MARKERS: [Marker; 6] = [
    Marker::Circle,
    Marker::Square,
    Marker::Triangle,
    Marker::Diamond,
    Marker::Cross,
    Marker::Bar,
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Marker {
    Circle,
    Square,
    Triangle,
    Diamond,
    Cross,
    Bar,
}

impl Marker {
    /// The marker centred on `(x, y)` as an SVG path.
    fn path(self, x: f64, y: f64) -> String {
        match self {
            Self::Circle => format!(
                "M{:.1} {y:.1}a3.5 3.5 0 1 0 7 0a3.5 3.5 0 1 0 -7 0Z",
                x - 3.5
            ),
            Self::Square => format!("M{:.1} {:.1}h7v7h-7Z", x - 3.5, y - 3.5),
            Self::Triangle => format!("M{x:.1} {:.1}l4 7h-8Z", y - 4.0),
            Self::Diamond => format!("M{x:.1} {:.1}l4 4l-4 4l-4 -4Z", y - 4.0),
            Self::Cross => format!(
                "M{:.1} {:.1}l7 7M{:.1} {:.1}l-7 7",
                x - 3.5,
                y - 3.5,
                x + 3.5,
                y - 3.5
            ),
            Self::Bar => format!("M{:.1} {:.1}h8v3h-8Z", x - 4.0, y - 1.5),
        }
    }
}

/// A number as charts, tables and CSVs write it: `decimals` places, no trailing noise.
pub fn format_value(value: f64, decimals: u8) -> String {
    format!("{value:.prec$}", prec = usize::from(decimals))
}

/// A CSV document of `header` and `rows`. Text cells go through [`crate::csv_cell::defuse`];
/// numbers are written as they are (a defused `-1` would no longer be a number).
fn csv_of(header: &[String], rows: &[Vec<Cell>]) -> String {
    let mut writer = csv::Writer::from_writer(Vec::new());
    // Writing to a Vec cannot fail; a failure would only lose the document, never panic.
    let mut ok = writer.write_record(header.iter().map(|text| crate::csv_cell::defuse(text)));
    for row in rows {
        if ok.is_ok() {
            ok = writer.write_record(row.iter().map(Cell::csv));
        }
    }
    let bytes = writer.into_inner().unwrap_or_default();
    String::from_utf8(bytes).unwrap_or_default()
}

/// One cell of a chart's data table and CSV.
#[derive(Clone, Debug, PartialEq)]
pub enum Cell {
    Text(String),
    Number(String),
}

impl Cell {
    fn csv(&self) -> String {
        match self {
            Self::Text(text) => crate::csv_cell::defuse(text),
            Self::Number(number) => number.clone(),
        }
    }

    pub fn text(&self) -> &str {
        match self {
            Self::Text(text) | Self::Number(text) => text,
        }
    }
}

/// The text alternative of a chart: exactly its data.
#[derive(Clone, Debug, PartialEq)]
pub struct DataTable {
    pub header: Vec<String>,
    pub rows: Vec<Vec<Cell>>,
}

impl DataTable {
    pub fn csv(&self) -> String {
        csv_of(&self.header, &self.rows)
    }
}

/// What a chart says around its drawing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Caption {
    /// Stable: the figure's id is `chart-{id}` and its CSV `{id}.csv`.
    pub id: String,
    pub title: String,
    /// One sentence saying what is drawn (the SVG's `<desc>`).
    pub description: String,
    /// The CSV link of exactly this data, when it has one.
    pub csv_url: Option<String>,
    /// The page shows the data's table itself, next to the chart (the account page's health
    /// history, which adds the band), so the chart leaves its own out.
    pub table_elsewhere: bool,
}

/// One named series of a line chart: a value per x position (`None`: no value there).
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub name: String,
    pub values: Vec<Option<f64>>,
}

/// A horizontal zone of a line chart's value axis (health bands).
#[derive(Clone, Debug, PartialEq)]
pub struct Zone {
    pub from: f64,
    pub to: f64,
    pub label: String,
    /// A CSS class from the code (`band-red` …), never tenant text.
    pub class: &'static str,
}

/// A line chart's data: x labels (periods, oldest first) and one or more series.
#[derive(Clone, Debug, PartialEq)]
pub struct LineData {
    pub caption: Caption,
    pub x_name: String,
    pub x_labels: Vec<String>,
    pub series: Vec<Series>,
    pub decimals: u8,
    /// A fixed value range (for example 0–100); otherwise 0 (or the lowest value) to a round
    /// number above the highest.
    pub range: Option<(f64, f64)>,
    pub zones: Vec<Zone>,
}

impl LineData {
    /// Whether any series has a value.
    pub fn has_data(&self) -> bool {
        self.series
            .iter()
            .any(|series| series.values.iter().any(Option::is_some))
    }

    pub fn table(&self) -> DataTable {
        let mut header = vec![self.x_name.clone()];
        header.extend(self.series.iter().map(|series| series.name.clone()));
        let rows = if self.has_data() {
            self.x_labels
                .iter()
                .enumerate()
                .map(|(index, label)| {
                    let mut row = vec![Cell::Text(label.clone())];
                    row.extend(self.series.iter().map(|series| {
                        Cell::Number(
                            series
                                .values
                                .get(index)
                                .copied()
                                .flatten()
                                .map_or_else(String::new, |v| format_value(v, self.decimals)),
                        )
                    }));
                    row
                })
                .collect()
        } else {
            Vec::new()
        };
        DataTable { header, rows }
    }

    /// Header and one row per x position: exactly what [`LineData::geometry`] draws.
    pub fn csv(&self) -> String {
        self.table().csv()
    }

    #[allow(clippy::too_many_lines)] // One drawing, read from axes to labels.
    pub fn geometry(&self) -> LineChart {
        let table = self.table();
        let values: Vec<f64> = self
            .series
            .iter()
            .flat_map(|series| series.values.iter().copied().flatten())
            .collect();
        let (low, high) = self.range.unwrap_or_else(|| {
            let lowest = values.iter().copied().fold(0.0_f64, f64::min);
            let highest = values.iter().copied().fold(0.0_f64, f64::max);
            (lowest, highest)
        });
        let (low, high, step) = nice_range(low, high);
        let scale_y = |value: f64| BOTTOM - (value - low) / (high - low) * (BOTTOM - TOP);
        let count = self.x_labels.len();
        let scale_x = |index: usize| {
            if count <= 1 {
                f64::midpoint(LEFT, RIGHT)
            } else {
                LEFT + index as f64 * (RIGHT - LEFT) / (count - 1) as f64
            }
        };
        let every = count.div_ceil(MAX_X_LABELS).max(1);
        let x_ticks = (0..count)
            .filter(|index| index % every == 0 || *index + 1 == count && count <= MAX_X_LABELS)
            .map(|index| Tick {
                position: scale_x(index),
                label: self.x_labels[index].clone(),
            })
            .collect();
        let mut y_ticks = Vec::new();
        let mut value = low;
        while value <= high + step / 2.0 {
            y_ticks.push(Tick {
                position: scale_y(value),
                label: format_value(value, tick_decimals(step)),
            });
            value += step;
        }
        let mut series = Vec::new();
        let mut label_slots: Vec<f64> = Vec::new();
        for (number, data) in self.series.iter().enumerate() {
            let marker = MARKERS[number % MARKERS.len()];
            let mut path = String::new();
            let mut points = Vec::new();
            let mut pen_down = false;
            for (index, value) in data.values.iter().enumerate().take(count) {
                let Some(value) = value else {
                    pen_down = false;
                    continue;
                };
                let (x, y) = (scale_x(index), scale_y(*value));
                let _ = write!(path, "{}{x:.1} {y:.1}", if pen_down { "L" } else { "M" });
                pen_down = true;
                points.push(PointMark {
                    marker: marker.path(x, y),
                    title: format!(
                        "{} {}: {}",
                        data.name,
                        self.x_labels[index],
                        format_value(*value, self.decimals)
                    ),
                });
            }
            let last = data
                .values
                .iter()
                .enumerate()
                .take(count)
                .rev()
                .find_map(|(index, value)| value.map(|value| (index, value)));
            let Some((last_index, last_value)) = last else {
                continue;
            };
            // Direct labels right of the plot, nudged apart so two ending together stay legible:
            // downwards while they stay above the x axis's labels, else upwards.
            let start = scale_y(last_value) + 4.0;
            let taken = |y: f64| label_slots.iter().any(|slot: &f64| (slot - y).abs() < 12.0);
            let mut label_y = start;
            while taken(label_y) && label_y <= BOTTOM + 4.0 {
                label_y += 12.0;
            }
            if label_y > BOTTOM + 4.0 {
                label_y = start;
                while taken(label_y) {
                    label_y -= 12.0;
                }
            }
            label_slots.push(label_y);
            series.push(SeriesMark {
                class: format!("series-{}", number % DASHES.len()),
                dash: DASHES[number % DASHES.len()],
                path,
                points,
                label: format!("{} {}", data.name, format_value(last_value, self.decimals)),
                label_x: scale_x(last_index).max(RIGHT) + 8.0,
                label_y,
                legend_marker: marker.path(0.0, 0.0),
            });
        }
        let zones = self
            .zones
            .iter()
            .map(|zone| {
                let from = zone.from.clamp(low, high);
                let to = zone.to.clamp(low, high);
                let (top, bottom) = (scale_y(to), scale_y(from));
                ZoneMark {
                    y: top,
                    height: (bottom - top).max(0.0),
                    label: zone.label.clone(),
                    label_y: top + 12.0,
                    class: zone.class,
                }
            })
            .collect();
        LineChart {
            caption: self.caption.clone(),
            empty: !self.has_data(),
            x_ticks,
            y_ticks,
            series,
            zones,
            table,
        }
    }
}

/// A chart's axis tick.
#[derive(Clone, Debug, PartialEq)]
pub struct Tick {
    pub position: f64,
    pub label: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct PointMark {
    /// The marker as an SVG path.
    pub marker: String,
    /// What a pointer shows: series, x label and value.
    pub title: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct SeriesMark {
    pub class: String,
    pub dash: &'static str,
    /// The line as an SVG path (`M`/`L` only); a missing value lifts the pen.
    pub path: String,
    pub points: Vec<PointMark>,
    /// The direct label at the series' last value.
    pub label: String,
    pub label_x: f64,
    pub label_y: f64,
    /// The series' marker at the origin, for the legend.
    pub legend_marker: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ZoneMark {
    pub y: f64,
    pub height: f64,
    pub label: String,
    pub label_y: f64,
    pub class: &'static str,
}

/// A line chart ready to draw (`templates/charts/line.html`).
#[derive(Clone, Debug, PartialEq)]
pub struct LineChart {
    pub caption: Caption,
    /// Nothing to draw: the template says "no data for these filters".
    pub empty: bool,
    pub x_ticks: Vec<Tick>,
    pub y_ticks: Vec<Tick>,
    pub series: Vec<SeriesMark>,
    pub zones: Vec<ZoneMark>,
    pub table: DataTable,
}

impl LineChart {
    /// The plot area's left, right, top and bottom edges, for the axes.
    pub fn left(&self) -> f64 {
        LEFT
    }
    pub fn right(&self) -> f64 {
        RIGHT
    }
    pub fn top(&self) -> f64 {
        TOP
    }
    pub fn bottom(&self) -> f64 {
        BOTTOM
    }
}

/// A bar chart's data: categories (rows, in the order given) and one or more series of values.
/// Drawn as horizontal bars, grouped by category, which keeps long names (agents, topics)
/// readable.
#[derive(Clone, Debug, PartialEq)]
pub struct BarData {
    pub caption: Caption,
    pub category_name: String,
    pub categories: Vec<String>,
    pub series: Vec<Series>,
    pub decimals: u8,
    /// A fixed maximum (for example 100 for scores); otherwise the highest value.
    pub max: Option<f64>,
}

impl BarData {
    pub fn has_data(&self) -> bool {
        !self.categories.is_empty()
    }

    pub fn table(&self) -> DataTable {
        let mut header = vec![self.category_name.clone()];
        header.extend(self.series.iter().map(|series| series.name.clone()));
        let rows = self
            .categories
            .iter()
            .enumerate()
            .map(|(index, category)| {
                let mut row = vec![Cell::Text(category.clone())];
                row.extend(self.series.iter().map(|series| {
                    Cell::Number(
                        series
                            .values
                            .get(index)
                            .copied()
                            .flatten()
                            .map_or_else(String::new, |v| format_value(v, self.decimals)),
                    )
                }));
                row
            })
            .collect();
        DataTable { header, rows }
    }

    pub fn csv(&self) -> String {
        self.table().csv()
    }

    pub fn geometry(&self) -> BarChart {
        let highest = self
            .series
            .iter()
            .flat_map(|series| series.values.iter().copied().flatten())
            .fold(0.0_f64, f64::max);
        let max = self.max.unwrap_or(highest).max(f64::EPSILON);
        let bar_height = 14.0;
        let group_gap = 10.0;
        let label_width = 180.0;
        let plot_width = WIDTH - label_width - 120.0;
        let group_height = bar_height * self.series.len() as f64 + group_gap;
        let mut groups = Vec::new();
        for (index, category) in self.categories.iter().enumerate() {
            let top = TOP + index as f64 * group_height;
            let bars = self
                .series
                .iter()
                .enumerate()
                .filter_map(|(number, series)| {
                    let value = series.values.get(index).copied().flatten()?;
                    let y = top + number as f64 * bar_height;
                    let width = (value.max(0.0) / max * plot_width).max(1.0);
                    Some(BarMark {
                        class: format!("series-{}", number % DASHES.len()),
                        y,
                        width,
                        height: bar_height - 2.0,
                        label: if self.series.len() > 1 {
                            format!("{} {}", series.name, format_value(value, self.decimals))
                        } else {
                            format_value(value, self.decimals)
                        },
                        label_x: label_width + width + 6.0,
                        label_y: y + bar_height - 4.0,
                    })
                })
                .collect();
            groups.push(BarGroup {
                label: category.clone(),
                label_y: top + (bar_height * self.series.len() as f64) / 2.0 + 4.0,
                bars,
            });
        }
        let height = (TOP * 2.0 + group_height * self.categories.len() as f64).max(60.0);
        BarChart {
            caption: self.caption.clone(),
            empty: !self.has_data(),
            label_width,
            height,
            groups,
            legend: self
                .series
                .iter()
                .enumerate()
                .map(|(number, series)| LegendEntry {
                    class: format!("series-{}", number % DASHES.len()),
                    name: series.name.clone(),
                })
                .collect(),
            table: self.table(),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct BarMark {
    pub class: String,
    pub y: f64,
    pub width: f64,
    pub height: f64,
    /// The value, with the series' name when there are several.
    pub label: String,
    pub label_x: f64,
    pub label_y: f64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct BarGroup {
    pub label: String,
    pub label_y: f64,
    pub bars: Vec<BarMark>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct LegendEntry {
    pub class: String,
    pub name: String,
}

/// A bar chart ready to draw (`templates/charts/bar.html`).
#[derive(Clone, Debug, PartialEq)]
pub struct BarChart {
    pub caption: Caption,
    pub empty: bool,
    pub label_width: f64,
    pub height: f64,
    pub groups: Vec<BarGroup>,
    pub legend: Vec<LegendEntry>,
    pub table: DataTable,
}

/// One part of a distribution: a band, a star rating.
#[derive(Clone, Debug, PartialEq)]
pub struct Part {
    pub name: String,
    pub count: u64,
    /// A CSS class from the code (`band-red`, `stars-1` …), never tenant text.
    pub class: &'static str,
}

/// How a whole divides into named parts (health bands, 1–5 stars): one bar of 100 %, each
/// segment labelled with its name, count and share.
#[derive(Clone, Debug, PartialEq)]
pub struct DistributionData {
    pub caption: Caption,
    pub part_name: String,
    pub parts: Vec<Part>,
}

impl DistributionData {
    pub fn total(&self) -> u64 {
        self.parts.iter().map(|part| part.count).sum()
    }

    pub fn table(&self) -> DataTable {
        let rows = if self.total() == 0 {
            Vec::new()
        } else {
            self.parts
                .iter()
                .map(|part| {
                    vec![
                        Cell::Text(part.name.clone()),
                        Cell::Number(part.count.to_string()),
                    ]
                })
                .collect()
        };
        DataTable {
            header: vec![self.part_name.clone(), "count".to_owned()],
            rows,
        }
    }

    pub fn csv(&self) -> String {
        self.table().csv()
    }

    pub fn geometry(&self) -> DistributionChart {
        let total = self.total();
        let width = WIDTH - 40.0;
        let mut x = 20.0;
        let mut segments = Vec::new();
        for (number, part) in self.parts.iter().enumerate() {
            if part.count == 0 || total == 0 {
                continue;
            }
            let share = part.count as f64 / total as f64;
            let segment_width = share * width;
            segments.push(Segment {
                class: part.class,
                x,
                width: segment_width,
                label: format!("{}: {} ({:.0} %)", part.name, part.count, share * 100.0),
                // Labels go below the bar, one row each, so narrow segments stay legible.
                label_y: 70.0 + number as f64 * 18.0,
            });
            x += segment_width;
        }
        let height = 80.0 + self.parts.len() as f64 * 18.0;
        DistributionChart {
            caption: self.caption.clone(),
            empty: total == 0,
            height,
            segments,
            table: self.table(),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Segment {
    pub class: &'static str,
    pub x: f64,
    pub width: f64,
    pub label: String,
    pub label_y: f64,
}

/// A distribution ready to draw (`templates/charts/distribution.html`).
#[derive(Clone, Debug, PartialEq)]
pub struct DistributionChart {
    pub caption: Caption,
    pub empty: bool,
    pub height: f64,
    pub segments: Vec<Segment>,
    pub table: DataTable,
}

/// A round range around `low..high` and its tick step (about five ticks).
fn nice_range(low: f64, high: f64) -> (f64, f64, f64) {
    let (low, high) = if (high - low).abs() < f64::EPSILON {
        if low == 0.0 {
            (0.0, 1.0)
        } else {
            (low.min(0.0), high.max(0.0) + low.abs())
        }
    } else {
        (low, high)
    };
    let raw = (high - low) / 5.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|factor| factor * magnitude)
        .find(|step| *step >= raw)
        .unwrap_or(magnitude * 10.0);
    let low = (low / step).floor() * step;
    let high = (high / step).ceil() * step;
    (low, high, step)
}

fn tick_decimals(step: f64) -> u8 {
    if step >= 1.0 {
        0
    } else if step >= 0.1 {
        1
    } else {
        2
    }
}

#[cfg(test)]
mod tests;
