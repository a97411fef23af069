//! RGB images for TensorBoard: the pixel buffer type, PNG encoding and the module-activation raster.

use super::LogError;

/// An 8-bit RGB image, rows top to bottom, pixels interleaved (`HWC`, `pixels.len() == width * height * 3`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RgbImage {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// `height` rows of `width` RGB triples.
    pub pixels: Vec<u8>,
}

impl RgbImage {
    /// The colour at column `x`, row `y`, or `None` outside the image or buffer.
    pub fn pixel(&self, x: usize, y: usize) -> Option<[u8; 3]> {
        if x >= self.width || y >= self.height {
            return None;
        }
        let at = (y * self.width + x) * 3;
        self.pixels.get(at..at + 3).map(|p| [p[0], p[1], p[2]])
    }

    /// Encode as PNG, checking first that the buffer matches the dimensions.
    pub(crate) fn encode_png(&self, tag: &str) -> Result<Vec<u8>, LogError> {
        let fail = |reason: String| LogError::Image {
            tag: tag.to_string(),
            reason,
        };
        let expected = self
            .width
            .checked_mul(self.height)
            .and_then(|n| n.checked_mul(3));
        if expected != Some(self.pixels.len()) {
            return Err(fail(format!(
                "{} bytes of pixels do not match {}x{} RGB (width * height * 3 bytes expected)",
                self.pixels.len(),
                self.width,
                self.height
            )));
        }
        let (Ok(width), Ok(height)) = (i32::try_from(self.width), i32::try_from(self.height))
        else {
            return Err(fail(format!("{}x{} is too large", self.width, self.height)));
        };
        if width == 0 || height == 0 {
            return Err(fail(format!("{}x{} is empty", self.width, self.height)));
        }
        let mut png_bytes = Vec::new();
        let mut encoder = png::Encoder::new(&mut png_bytes, width as u32, height as u32);
        encoder.set_color(png::ColorType::RGB);
        encoder.set_depth(png::BitDepth::Eight);
        encoder
            .write_header()
            .and_then(|mut writer| writer.write_image_data(&self.pixels))
            .map_err(|e| fail(format!("PNG encoding failed: {e}")))?;
        Ok(png_bytes)
    }
}

/// Widest activation image drawn; longer episodes are binned in time to fit.
const MAX_WIDTH: usize = 2000;
/// Smallest side of one module-by-step cell, so short episodes stay visible.
const MIN_CELL: usize = 4;
/// Largest cell width, so very short episodes do not become huge blocks.
const MAX_CELL_WIDTH: usize = 16;
/// Preferred total height of the module rows.
const TARGET_HEIGHT: usize = 512;
/// Largest cell height.
const MAX_CELL_HEIGHT: usize = 16;
/// Colour of an inactive cell.
const OFF: [u8; 3] = [24, 24, 32];
/// Colour of a cell active at every step it covers.
const ON: [u8; 3] = [255, 214, 64];
/// Colour of the one-pixel line separating module rows (drawn when cells are tall enough).
const GRID: [u8; 3] = [0, 0, 0];

/// Render module activations over an episode as an image: rows = modules, columns = time steps,
/// active = bright cell.
///
/// `masks[t][m]` says whether module `m` was active at step `t`; rows shorter than the longest
/// count their missing modules as inactive. Each cell is at least 4x4 px (up to 16 wide and 16
/// tall); episodes longer than 500 steps are binned so the image is at most 2000 px wide, each
/// column then covering several consecutive steps and its brightness the fraction of them the
/// module was active. An empty episode or a core without modules gives a 0x0 image, which
/// [`RunLogger::image`](super::RunLogger::image) skips.
pub fn activation_image(masks: &[Vec<bool>]) -> RgbImage {
    let steps = masks.len();
    let modules = masks.iter().map(Vec::len).max().unwrap_or(0);
    if steps == 0 || modules == 0 {
        return RgbImage {
            width: 0,
            height: 0,
            pixels: Vec::new(),
        };
    }
    let steps_per_column = steps.div_ceil(MAX_WIDTH / MIN_CELL);
    let columns = steps.div_ceil(steps_per_column);
    let cell_w = (MAX_WIDTH / columns).clamp(MIN_CELL, MAX_CELL_WIDTH);
    let cell_h = (TARGET_HEIGHT / modules).clamp(MIN_CELL, MAX_CELL_HEIGHT);
    let (width, height) = (columns * cell_w, modules * cell_h);
    let mut pixels = vec![0u8; width * height * 3];
    for column in 0..columns {
        let window =
            &masks[column * steps_per_column..((column + 1) * steps_per_column).min(steps)];
        for module in 0..modules {
            let active = window
                .iter()
                .filter(|mask| mask.get(module).copied().unwrap_or(false))
                .count();
            let fraction = active as f32 / window.len() as f32;
            let colour: [u8; 3] = std::array::from_fn(|c| {
                let (off, on) = (f32::from(OFF[c]), f32::from(ON[c]));
                (off + (on - off) * fraction).round() as u8
            });
            for dy in 0..cell_h {
                let y = module * cell_h + dy;
                let colour = if cell_h >= 8 && dy == cell_h - 1 {
                    GRID
                } else {
                    colour
                };
                let row = (y * width + column * cell_w) * 3;
                for px in pixels[row..row + cell_w * 3].chunks_exact_mut(3) {
                    px.copy_from_slice(&colour);
                }
            }
        }
    }
    RgbImage {
        width,
        height,
        pixels,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn png_has_the_image_dimensions_in_its_header() {
        let image = RgbImage {
            width: 5,
            height: 2,
            pixels: vec![7; 30],
        };
        let png = image.encode_png("t").unwrap();
        assert_eq!(&png[1..4], b"PNG");
        // IHDR: width then height, big-endian, right after the 8-byte signature and chunk header.
        assert_eq!(u32::from_be_bytes(png[16..20].try_into().unwrap()), 5);
        assert_eq!(u32::from_be_bytes(png[20..24].try_into().unwrap()), 2);
    }

    #[test]
    fn mismatched_or_empty_buffers_are_errors() {
        let short = RgbImage {
            width: 4,
            height: 4,
            pixels: vec![0; 47],
        };
        let message = short
            .encode_png("modules/activations")
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("modules/activations") && message.contains("47"),
            "{message}"
        );
        assert!(activation_image(&[]).encode_png("t").is_err());
    }

    #[test]
    fn long_episodes_are_binned_to_the_width_limit() {
        let masks: Vec<Vec<bool>> = (0..5000).map(|t| vec![t % 2 == 0, true]).collect();
        let image = activation_image(&masks);
        assert!(image.width <= MAX_WIDTH, "{}", image.width);
        assert!(image.width >= MAX_WIDTH / 2);
        // Module 1 is always on; module 0 half the time, so dimmer but not dark.
        let always = image.pixel(0, image.height - 2).unwrap();
        let half = image.pixel(0, 0).unwrap();
        assert_eq!(always, ON);
        assert!(half[0] > OFF[0] && half[0] < ON[0], "{half:?}");
    }
}
