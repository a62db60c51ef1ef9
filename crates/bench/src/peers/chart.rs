//! The report's chart: one panel per case, a bar per tool (median time), cpm's in its own colour.

use super::{CASES, Measure};
use anyhow::{Context, Result, anyhow};
use plotters::prelude::*;
use std::path::Path;

const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

pub fn draw(measures: &[Measure], path: &Path) -> Result<()> {
    let font: &'static [u8] =
        Box::leak(std::fs::read(FONT).with_context(|| format!("cannot read {FONT}"))?.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, font)
        .map_err(|_| anyhow!("{FONT} is not a font"))?;
    let cases: Vec<(u8, &str)> =
        CASES.iter().copied().filter(|(case, _)| measures.iter().any(|measure| measure.case == *case)).collect();
    let height =
        60 + cases.iter().map(|(case, _)| 50 + 34 * measures.iter().filter(|m| m.case == *case).count()).sum::<usize>();
    let root = BitMapBackend::new(path, (1000, u32::try_from(height)?)).into_drawing_area();
    root.fill(&WHITE).map_err(|error| anyhow!("{error}"))?;
    let (title, mut rest) = root.split_vertically(50);
    title
        .draw(&Text::new(
            "cpm and the tools people use today: median time, shorter is better",
            (20, 15),
            ("sans-serif", 22),
        ))
        .map_err(|error| anyhow!("{error}"))?;
    for (case, heading) in cases {
        let rows: Vec<&Measure> = measures.iter().filter(|measure| measure.case == case).collect();
        let (panel, below) = rest.split_vertically(50 + 34 * rows.len() as u32);
        rest = below;
        let longest = rows.iter().map(|measure| measure.time().median).fold(0.0, f64::max).max(1e-3);
        let mut chart = ChartBuilder::on(&panel)
            .caption(format!("{case}. {heading}"), ("sans-serif", 17))
            .margin(8)
            .x_label_area_size(0)
            .y_label_area_size(0)
            .build_cartesian_2d(0.0..longest * 1.6, 0.0..rows.len() as f64)
            .map_err(|error| anyhow!("{error}"))?;
        for (i, measure) in rows.iter().enumerate() {
            let median = measure.time().median;
            let colour = if measure.tool.starts_with("cpm") { RGBColor(0, 114, 178) } else { RGBColor(150, 150, 150) };
            let top = rows.len() as f64 - i as f64;
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(0.0, top - 0.85), (median, top - 0.15)],
                    colour.filled(),
                )))
                .map_err(|error| anyhow!("{error}"))?;
            let label = if median < 1.0 { format!("{:.0} ms", median * 1000.0) } else { format!("{median:.2} s") };
            chart
                .draw_series(std::iter::once(Text::new(
                    format!("{}  {label}", measure.tool),
                    (median + longest * 0.02, top - 0.3),
                    ("sans-serif", 15),
                )))
                .map_err(|error| anyhow!("{error}"))?;
        }
    }
    root.present().map_err(|error| anyhow!("{error}"))?;
    Ok(())
}
