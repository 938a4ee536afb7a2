//! A period drawn as one inline SVG: the drawing that `simulate --html` and
//! the status page's account page share.
//!
//! A [`Timeline`] is a period cut into buckets of whole minutes (at most
//! [`MAX_BUCKETS`], so the SVG's size is bounded whatever the period's
//! length), a line of one value per bucket against a dashed 100% mark,
//! locked minutes shaded in the chart and in a strip below it, and marks at
//! instants (clears, refusals), each with a tooltip. It knows nothing of
//! traces or ledgers: callers say what to shade and mark. Every text in it
//! goes through maud, so a tooltip carrying WeChat's `errmsg` is escaped.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use maud::{html, Markup};

use crate::calendar;

/// Buckets per timeline: the resolution and the size bound.
pub const MAX_BUCKETS: u32 = 720;

/// Bucket widths in minutes, finest first; each divides a day.
const WIDTHS: [u32; 13] = [1, 2, 5, 10, 15, 20, 30, 60, 120, 180, 360, 720, 1440];

/// SVG geometry (viewBox units).
const WIDTH: f64 = 1000.0;
const LEFT: f64 = 44.0;
const RIGHT: f64 = 8.0;
const TOP: f64 = 8.0;
const CHART: f64 = 120.0;
const STRIP_TOP: f64 = TOP + CHART + 6.0;
const STRIP: f64 = 10.0;
const HEIGHT: f64 = STRIP_TOP + STRIP + 18.0;

/// The drawing's classes; a page that shows a timeline includes this.
pub const STYLE: &str = "svg{width:100%;max-width:1000px;height:auto;display:block}\n\
.grid{stroke:#ddd;stroke-width:1}.limit{stroke:#888;stroke-dasharray:4 3}\n\
.demand,.budget{fill:none;stroke:#333;stroke-width:1.2}.axis{font-size:10px;fill:#555}\n\
.locked{fill:#d33}.strip{fill:#f3f3f3}.oracle-locked{fill:#393}\n\
.clear{stroke-width:1.5}.policy{stroke:#1552b8}.oracle{stroke:#0a7a2a}\n\
.refused{stroke-dasharray:2 2}.key-policy{color:#1552b8}.key-oracle{color:#0a7a2a}\n\
.clear.ok{stroke:#0a7a2a;stroke-width:2}.clear.failed{stroke:#b00;stroke-width:3;stroke-dasharray:3 2}\n\
.clear.ambiguous{stroke:#c60;stroke-width:3;stroke-dasharray:1 2}.clear.pending{stroke:#888}\n\
.refusal{stroke:#555;stroke-width:1}.now{stroke:#000;stroke-dasharray:1 3}\n";

/// The width of a bucket for a period of `minutes`.
pub fn bucket_minutes(minutes: u32) -> u32 {
    WIDTHS
        .iter()
        .copied()
        .find(|w| minutes.div_ceil(*w) <= MAX_BUCKETS)
        .unwrap_or_else(|| minutes.div_ceil(MAX_BUCKETS).div_ceil(1440) * 1440)
}

/// Where a mark stands: across the chart, or on the strip below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Band {
    Chart,
    Strip,
}

/// A vertical mark at an instant, with its tooltip.
#[derive(Debug, Clone)]
pub struct Mark {
    pub at: DateTime<Utc>,
    /// CSS classes: how the reader tells one kind of mark from another.
    pub class: String,
    pub title: String,
    pub band: Band,
}

/// The line: one value per bucket, where 1.0 is the dashed limit.
#[derive(Debug, Clone)]
pub struct Line {
    /// The CSS class of the polyline (`demand`, `budget`).
    pub class: &'static str,
    pub values: Vec<f64>,
    /// The y axis shows at least this much of the value and at most `cap`.
    pub floor: f64,
    pub cap: f64,
}

/// A period and what to draw on it.
#[derive(Debug, Clone)]
pub struct Timeline {
    pub start: DateTime<Utc>,
    pub minutes: u32,
    pub timezone: Tz,
    pub bucket: u32,
    pub line: Option<Line>,
    /// Per bucket, the locked minutes shaded in the chart.
    pub locked: Vec<u32>,
    /// Per bucket, the minutes shaded on the strip.
    pub strip: Vec<u32>,
    /// The CSS classes of the two shadings.
    pub locked_class: &'static str,
    pub strip_class: &'static str,
    pub marks: Vec<Mark>,
    /// Drawn as a dotted line: the page's time, inside a period still running.
    pub now: Option<DateTime<Utc>>,
}

impl Timeline {
    /// An empty drawing of `[start, end)`.
    pub fn new(start: DateTime<Utc>, end: DateTime<Utc>, timezone: Tz) -> Self {
        let minutes = ((end - start).num_minutes().max(1)) as u32;
        let bucket = bucket_minutes(minutes);
        let buckets = minutes.div_ceil(bucket) as usize;
        Self {
            start,
            minutes,
            timezone,
            bucket,
            line: None,
            locked: vec![0; buckets],
            strip: vec![0; buckets],
            locked_class: "locked",
            strip_class: "strip-locked",
            marks: Vec::new(),
            now: None,
        }
    }

    pub fn buckets(&self) -> usize {
        self.minutes.div_ceil(self.bucket) as usize
    }

    /// The instant at minute `m` of the period.
    pub fn at(&self, m: u32) -> DateTime<Utc> {
        self.start + chrono::Duration::minutes(i64::from(m))
    }

    /// Per bucket, how many of the minute indexes `minutes` fall in it.
    pub fn count_minutes(&self, minutes: &[u32]) -> Vec<u32> {
        let mut count = vec![0_u32; self.buckets()];
        for m in minutes.iter().filter(|m| **m < self.minutes) {
            count[(m / self.bucket) as usize] += 1;
        }
        count
    }

    /// Per bucket, the whole minutes of `spans` (`[from, to)`) inside it.
    pub fn count_spans(&self, spans: &[(DateTime<Utc>, DateTime<Utc>)]) -> Vec<u32> {
        let mut count = vec![0_u32; self.buckets()];
        let minute =
            |t: DateTime<Utc>| (t - self.start).num_minutes().clamp(0, self.minutes.into());
        for (from, to) in spans {
            let (a, b) = (minute(*from) as u32, minute(*to) as u32);
            let mut m = a;
            while m < b {
                let b_idx = m / self.bucket;
                let next = ((b_idx + 1) * self.bucket).min(b);
                count[b_idx as usize] += next - m;
                m = next;
            }
        }
        count
    }

    fn x(&self, minute: f64) -> f64 {
        LEFT + minute.clamp(0.0, f64::from(self.minutes)) / f64::from(self.minutes)
            * (WIDTH - LEFT - RIGHT)
    }

    fn x_at(&self, t: DateTime<Utc>) -> f64 {
        self.x((t - self.start).num_seconds() as f64 / 60.0)
    }

    /// The drawing.
    pub fn svg(&self) -> Markup {
        html! {
            svg xmlns="http://www.w3.org/2000/svg" viewBox=(format!("0 0 {WIDTH} {HEIGHT}")) role="img" {
                rect class="strip" x=(LEFT) y=(STRIP_TOP) width=(n(WIDTH - LEFT - RIGHT)) height=(STRIP) {}
                (self.days())
                (self.shading(&self.locked, self.locked_class, TOP, CHART))
                (self.shading(&self.strip, self.strip_class, STRIP_TOP, STRIP))
                @if let Some(line) = &self.line { (self.line(line)) }
                @if let Some(now) = self.now.filter(|t| *t > self.start && *t < self.at(self.minutes)) {
                    @let x = n(self.x_at(now));
                    line class="now" x1=(x) x2=(x) y1=(TOP) y2=(n(STRIP_TOP + STRIP)) { title { "now" } }
                }
                @for mark in &self.marks { (self.mark(mark)) }
            }
        }
    }

    fn line(&self, line: &Line) -> Markup {
        let ymax = line
            .values
            .iter()
            .copied()
            .fold(0.0, f64::max)
            .clamp(line.floor, line.cap);
        let y = |v: f64| TOP + CHART - v.min(ymax) / ymax * CHART;
        let mut points = format!("{},{}", n(LEFT), n(y(0.0)));
        for (b, v) in line.values.iter().enumerate() {
            let end = ((b as u32 + 1) * self.bucket).min(self.minutes);
            points.push_str(&format!(" {},{}", n(self.x(f64::from(end))), n(y(*v))));
        }
        let ticks = [(0.0, "grid"), (1.0, "limit"), (ymax, "grid")];
        html! {
            @for (v, class) in ticks {
                line class=(class) x1=(LEFT) x2=(n(WIDTH - RIGHT)) y1=(n(y(v))) y2=(n(y(v))) {}
                text class="axis" x=(n(LEFT - 3.0)) y=(n(y(v) + 3.0)) text-anchor="end" { (format!("{:.0}%", v * 100.0)) }
            }
            polyline class=(line.class) points=(points) {}
        }
    }

    /// The minute index of each 00:00 in the period after its start.
    pub fn day_starts(&self) -> Vec<u32> {
        let mut out = Vec::new();
        let end = self.at(self.minutes);
        let mut day = calendar::day(self.timezone, self.start);
        while day.end < end {
            out.push((day.end - self.start).num_minutes() as u32);
            day = calendar::day(self.timezone, day.end);
        }
        out
    }

    /// A gridline at each 00:00, labelled with the date often enough to read.
    fn days(&self) -> Markup {
        let mut starts = vec![0_u32];
        starts.extend(self.day_starts());
        let every = starts.len().div_ceil(15).max(1);
        html! {
            @for (i, m) in starts.into_iter().enumerate() {
                @let x = n(self.x(f64::from(m)));
                line class="grid" x1=(x) x2=(x) y1=(TOP) y2=(n(TOP + CHART)) {}
                @if i % every == 0 {
                    text class="axis" x=(n(self.x(f64::from(m)) + 2.0)) y=(n(HEIGHT - 4.0)) {
                        (self.at(m).with_timezone(&self.timezone).format("%m-%d"))
                    }
                }
            }
        }
    }

    /// Runs of buckets holding locked minutes, darker the more they hold
    /// (four levels, so neighbouring buckets merge).
    fn shading(&self, count: &[u32], class: &str, top: f64, height: f64) -> Markup {
        let level = |c: u32| match c {
            0 => 0,
            c => (c * 4).div_ceil(self.bucket).min(4),
        };
        let mut runs = Vec::new();
        let mut b = 0;
        while b < count.len() {
            let (l, start) = (level(count[b]), b);
            while b < count.len() && level(count[b]) == l {
                b += 1;
            }
            if l > 0 {
                let x0 = self.x(f64::from(start as u32 * self.bucket));
                let x1 = self.x(f64::from((b as u32 * self.bucket).min(self.minutes)));
                runs.push((x0, (x1 - x0).max(0.5), 0.15 + 0.15 * f64::from(l)));
            }
        }
        html! {
            @for (x, w, opacity) in runs {
                rect class=(class) x=(n(x)) y=(n(top)) width=(n(w)) height=(n(height)) fill-opacity=(format!("{opacity:.2}")) {}
            }
        }
    }

    fn mark(&self, mark: &Mark) -> Markup {
        let x = n(self.x_at(mark.at));
        let (y1, y2) = match mark.band {
            Band::Chart => (TOP, TOP + CHART),
            Band::Strip => (STRIP_TOP - 4.0, STRIP_TOP + STRIP + 2.0),
        };
        html! {
            line class=(mark.class) x1=(x) x2=(x) y1=(n(y1)) y2=(n(y2)) { title { (mark.title) } }
        }
    }
}

/// A coordinate to one decimal: enough for a 1000-unit-wide drawing.
fn n(v: f64) -> String {
    format!("{v:.1}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn buckets_keep_a_timeline_under_the_bound() {
        for (minutes, want) in [
            (1440, 2),
            (7 * 1440, 15),
            (30 * 1440, 60),
            (31 * 1440, 120),
            (720, 1),
        ] {
            assert_eq!(bucket_minutes(minutes), want, "{minutes}");
        }
        let year: u32 = 1000 * 1440;
        assert!(year.div_ceil(bucket_minutes(year)) <= MAX_BUCKETS);
    }

    #[test]
    fn spans_are_counted_per_bucket_and_clipped_to_the_period() {
        let tl = Timeline::new(
            at("2026-11-01T00:00:00+08:00"),
            at("2026-11-02T00:00:00+08:00"),
            chrono_tz::Asia::Shanghai,
        );
        assert_eq!(tl.bucket, 2);
        let count = tl.count_spans(&[
            (
                at("2026-10-31T23:00:00+08:00"),
                at("2026-11-01T00:03:00+08:00"),
            ),
            (
                at("2026-11-01T23:59:00+08:00"),
                at("2026-11-02T01:00:00+08:00"),
            ),
        ]);
        assert_eq!(&count[..3], &[2, 1, 0]);
        assert_eq!(count[719], 1);
        assert_eq!(count.iter().sum::<u32>(), 4);
        assert_eq!(tl.count_minutes(&[0, 1, 3, 5000]), {
            let mut want = vec![0; 720];
            want[0] = 2;
            want[1] = 1;
            want
        });
    }

    #[test]
    fn tooltips_and_classes_are_escaped() {
        let mut tl = Timeline::new(
            at("2026-11-01T00:00:00+08:00"),
            at("2026-12-01T00:00:00+08:00"),
            chrono_tz::Asia::Shanghai,
        );
        tl.marks.push(Mark {
            at: at("2026-11-03T10:00:00+08:00"),
            class: "clear failed\"><script>".into(),
            title: "<script>alert(1)</script>".into(),
            band: Band::Chart,
        });
        let svg = tl.svg().into_string();
        assert!(!svg.contains("<script>"), "{svg}");
        assert!(
            svg.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{svg}"
        );
        assert!(
            svg.contains("class=\"clear failed&quot;&gt;&lt;script&gt;\""),
            "{svg}"
        );
        assert_eq!(svg.matches("<svg ").count(), 1);
    }
}
