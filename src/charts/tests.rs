//! Geometry and rendered SVG of each chart kind with zero, one and many points.

use askama::Template;

use super::*;

fn caption(id: &str) -> Caption {
    Caption {
        id: id.to_owned(),
        title: "Volume <by> channel".to_owned(),
        description: "Interactions per day".to_owned(),
        csv_url: Some("/t/acme/dashboard/volume.csv?from=2026-01-01".to_owned()),
        table_elsewhere: false,
    }
}

fn line(values: &[Option<f64>]) -> LineData {
    LineData {
        caption: caption("volume"),
        x_name: "day".to_owned(),
        x_labels: (0..values.len())
            .map(|day| format!("2026-01-{:02}", day + 1))
            .collect(),
        series: vec![
            Series {
                name: "chat".to_owned(),
                values: values.to_vec(),
            },
            Series {
                name: "=mail".to_owned(),
                values: values.iter().map(|value| value.map(|v| v * 2.0)).collect(),
            },
        ],
        decimals: 0,
        range: None,
        zones: Vec::new(),
    }
}

#[derive(Template)]
#[template(source = "{% include \"charts/line.html\" %}", ext = "html")]
struct LineTest {
    chart: LineChart,
}

#[derive(Template)]
#[template(source = "{% include \"charts/bar.html\" %}", ext = "html")]
struct BarTest {
    chart: BarChart,
}

#[derive(Template)]
#[template(source = "{% include \"charts/distribution.html\" %}", ext = "html")]
struct DistributionTest {
    chart: DistributionChart,
}

#[test]
fn a_line_chart_without_points_says_there_is_no_data() {
    let data = line(&[]);
    let chart = data.geometry();
    assert!(chart.empty);
    assert!(chart.series.is_empty());
    assert_eq!(data.csv(), "day,chat,'=mail\n");
    let html = LineTest { chart }.render().unwrap();
    assert!(html.contains("No data for these filters."));
    assert!(!html.contains("<svg class=\"chart-svg\""));
    assert!(html.contains("id=\"chart-volume\""));
}

#[test]
fn a_line_chart_with_one_point_draws_a_visible_marker_in_the_middle() {
    let data = line(&[Some(4.0)]);
    let chart = data.geometry();
    assert!(!chart.empty);
    assert_eq!(chart.series.len(), 2);
    let first = &chart.series[0];
    assert_eq!(first.points.len(), 1);
    // One x position sits in the middle of the plot; the line is a lone move, so only the
    // marker shows.
    assert_eq!(
        first.path,
        format!(
            "M{:.1} {:.1}",
            f64::midpoint(LEFT, RIGHT),
            first_y(&chart, 4.0)
        )
    );
    assert!(first.points[0].marker.starts_with('M'));
    assert_eq!(first.label, "chat 4");
    assert_ne!(
        chart.series[0].dash, chart.series[1].dash,
        "dash patterns tell series apart"
    );
    assert_ne!(chart.series[0].legend_marker, chart.series[1].legend_marker);
    assert_eq!(data.csv(), "day,chat,'=mail\n2026-01-01,4,8\n");
    let html = LineTest { chart }.render().unwrap();
    assert!(html.contains("role=\"img\""));
    assert!(
        html.contains("<title id=\"chart-volume-title\">Volume &#60;by&#62; channel</title>")
            || html.contains("<title id=\"chart-volume-title\">Volume &lt;by&gt; channel</title>")
    );
    assert!(html.contains("<desc id=\"chart-volume-desc\">Interactions per day</desc>"));
    assert!(html.contains("class=\"marker\""));
    assert!(html.contains("<td>2026-01-01</td><td>4</td><td>8</td>"));
}

fn first_y(chart: &LineChart, value: f64) -> f64 {
    // The value axis of one point 4 (and 8) runs from 0 to 10.
    let top = chart.y_ticks.last().unwrap().label.parse::<f64>().unwrap();
    BOTTOM - value / top * (BOTTOM - TOP)
}

#[test]
fn a_line_chart_with_many_points_spans_the_plot_and_lifts_the_pen_over_gaps() {
    let mut values: Vec<Option<f64>> = (0..120).map(|day| Some(f64::from(day % 7))).collect();
    values[50] = None;
    let data = line(&values);
    let chart = data.geometry();
    let first = &chart.series[0];
    assert_eq!(first.points.len(), 119);
    assert!(first.path.starts_with(&format!("M{LEFT:.1} ")));
    assert_eq!(
        first.path.matches('M').count(),
        2,
        "the gap lifts the pen once"
    );
    assert!(first.path.contains(&format!("L{RIGHT:.1} ")));
    assert!(chart.x_ticks.len() <= MAX_X_LABELS);
    assert_eq!(chart.y_ticks.first().unwrap().label, "0");
    let csv = data.csv();
    assert_eq!(csv.lines().count(), 121);
    assert!(csv.contains("\n2026-01-51,,\n") || csv.lines().nth(51).unwrap().ends_with(",,"));
    let html = LineTest { chart }.render().unwrap();
    assert_eq!(html.matches("class=\"marker\"").count(), 238);
}

#[test]
fn zones_are_drawn_with_their_names_within_a_fixed_range() {
    let mut data = line(&[Some(30.0), Some(80.0)]);
    data.series.truncate(1);
    data.range = Some((0.0, 100.0));
    data.zones = vec![
        Zone {
            from: 0.0,
            to: 40.0,
            label: "red".to_owned(),
            class: "band-red",
        },
        Zone {
            from: 40.0,
            to: 70.0,
            label: "amber".to_owned(),
            class: "band-amber",
        },
        Zone {
            from: 70.0,
            to: 100.0,
            label: "green".to_owned(),
            class: "band-green",
        },
    ];
    let chart = data.geometry();
    assert_eq!(chart.zones.len(), 3);
    assert!((chart.zones[0].y + chart.zones[0].height - BOTTOM).abs() < 1e-9);
    assert!((chart.zones[2].y - TOP).abs() < 1e-9);
    let html = LineTest { chart }.render().unwrap();
    assert!(html.contains(">amber</text>"));
}

fn bars(categories: usize) -> BarData {
    BarData {
        caption: caption("topics"),
        category_name: "topic".to_owned(),
        categories: (0..categories).map(|n| format!("topic {n}")).collect(),
        series: vec![
            Series {
                name: "this period".to_owned(),
                values: (0..categories)
                    .map(|n| Some(f64::from(u32::try_from(n).unwrap()) + 1.0))
                    .collect(),
            },
            Series {
                name: "previous period".to_owned(),
                values: (0..categories).map(|_| Some(2.0)).collect(),
            },
        ],
        decimals: 0,
        max: None,
    }
}

#[test]
fn bar_charts_with_zero_one_and_many_categories() {
    let empty = bars(0).geometry();
    assert!(empty.empty);
    let html = BarTest { chart: empty }.render().unwrap();
    assert!(html.contains("No data for these filters."));

    let one = bars(1);
    let chart = one.geometry();
    assert_eq!(chart.groups.len(), 1);
    assert_eq!(chart.groups[0].bars.len(), 2);
    assert_eq!(chart.groups[0].bars[0].label, "this period 1");
    assert_eq!(
        one.csv(),
        "topic,this period,previous period\ntopic 0,1,2\n"
    );

    let many = bars(12);
    let chart = many.geometry();
    assert_eq!(chart.groups.len(), 12);
    // The longest bar is the highest value, drawn the full plot width.
    let widest = chart.groups[11].bars[0].width;
    assert!(chart
        .groups
        .iter()
        .flat_map(|group| &group.bars)
        .all(|bar| bar.width <= widest));
    assert!(chart.groups[1].bars[0].y > chart.groups[0].bars[1].y);
    let html = BarTest { chart }.render().unwrap();
    assert_eq!(html.matches("class=\"bar series-").count(), 24);
    assert!(html.contains("<li>"), "a legend names the series");
}

#[test]
fn a_distribution_labels_every_part_and_its_share() {
    let data = DistributionData {
        caption: caption("health"),
        part_name: "band".to_owned(),
        parts: vec![
            Part {
                name: "red".to_owned(),
                count: 1,
                class: "band-red",
            },
            Part {
                name: "amber".to_owned(),
                count: 0,
                class: "band-amber",
            },
            Part {
                name: "green".to_owned(),
                count: 3,
                class: "band-green",
            },
        ],
    };
    let chart = data.geometry();
    assert_eq!(chart.segments.len(), 2);
    assert_eq!(chart.segments[0].label, "red: 1 (25 %)");
    assert!((chart.segments[1].x - (20.0 + 0.25 * 600.0)).abs() < 1e-9);
    assert_eq!(data.csv(), "band,count\nred,1\namber,0\ngreen,3\n");
    let html = DistributionTest { chart }.render().unwrap();
    assert!(html.contains("green: 3 (75 %)"));

    let none = DistributionData {
        parts: vec![],
        ..data
    };
    assert!(none.geometry().empty);
    assert_eq!(none.csv(), "band,count\n");
}

#[test]
fn nice_ranges_are_round() {
    assert_eq!(nice_range(0.0, 0.0), (0.0, 1.0, 0.2));
    assert_eq!(nice_range(0.0, 97.0), (0.0, 100.0, 20.0));
    assert_eq!(nice_range(-0.4, 0.9), (-0.5, 1.0, 0.5));
}

#[test]
fn series_labels_that_end_together_at_zero_stay_apart_and_above_the_x_axis_labels() {
    let mut data = line(&[Some(0.0), Some(0.0)]);
    data.series.push(Series {
        name: "phone".to_owned(),
        values: vec![Some(0.0), Some(0.0)],
    });
    let chart = data.geometry();
    let mut ys: Vec<f64> = chart.series.iter().map(|series| series.label_y).collect();
    assert_eq!(ys.len(), 3);
    for y in &ys {
        assert!(
            *y <= BOTTOM + 4.0,
            "label at {y} runs into the x axis's labels"
        );
    }
    ys.sort_by(f64::total_cmp);
    for pair in ys.windows(2) {
        assert!(pair[1] - pair[0] >= 12.0, "labels overlap: {ys:?}");
    }
}
