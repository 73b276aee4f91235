//! What the plots of the command-line tool and the examples share (with the `cli` feature):
//! the embedded font and the palette.

use crate::error::{Error, Result};
use plotters::style::{FontStyle, RGBColor};

/// Registers the embedded DejaVu Sans (regular and bold) as plotters' "sans-serif", so that
/// plots need no system fonts. Safe to call more than once.
pub fn register_font() -> Result<()> {
    static ONCE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let ok = *ONCE.get_or_init(|| {
        plotters::style::register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular())
            .is_ok()
            && plotters::style::register_font("sans-serif", FontStyle::Bold, dejavu::sans::bold())
                .is_ok()
    });
    if ok {
        Ok(())
    } else {
        Err(Error::Unsupported(
            "the embedded DejaVu Sans font could not be loaded".into(),
        ))
    }
}

/// Distinct colours (Tableau 10), one per series, cycled.
pub const COLOURS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];
