//! Positions for FHIR's `near` search parameter (R4: `Location.position`, WGS84 degrees).
//!
//! Distances are great-circle distances on a sphere of the mean Earth radius (IUGG, 6,371.0088
//! km), as the haversine formula gives them; the error against the WGS84 ellipsoid is under
//! 0.5 %, well inside what "near" asks for. A backend filters in two steps: a bounding box in
//! degrees (a range scan of a `(lat, lon)` B-tree, [`NearValue::bounds`]) and then the exact
//! test on the stored unit vector (`x, y, z`, [`unit_vector`]), which needs only arithmetic —
//! no trigonometry in SQL: two points are within `d` of each other exactly when the squared
//! chord between their unit vectors is at most [`NearValue::chord2`].

/// The mean Earth radius in metres (IUGG).
pub const EARTH_RADIUS_M: f64 = 6_371_008.8;

/// `near` without a distance: this many metres (R4 leaves the default to the server).
pub const DEFAULT_NEAR_M: f64 = 50_000.0;

/// The point on the unit sphere of a latitude/longitude in degrees.
pub fn unit_vector(lat: f64, lon: f64) -> [f64; 3] {
    let (phi, lambda) = (lat.to_radians(), lon.to_radians());
    [phi.cos() * lambda.cos(), phi.cos() * lambda.sin(), phi.sin()]
}

/// The great-circle distance in metres between two positions in degrees (haversine).
pub fn distance_m(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = p2 - p1;
    let dl = (lon2 - lon1).to_radians();
    let h = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_M * h.sqrt().min(1.0).asin()
}

/// Whether a latitude and longitude are a position (finite, within ±90 and ±180 degrees).
pub fn valid_position(lat: f64, lon: f64) -> bool {
    lat.is_finite() && lon.is_finite() && (-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon)
}

/// One `near` value: `lat|lon|distance|units`, the distance in metres.
#[derive(Debug, Clone, PartialEq)]
pub struct NearValue {
    pub lat: f64,
    pub lon: f64,
    pub distance_m: f64,
}

/// A latitude/longitude box in degrees; `lon: None` when the box spans every longitude (near a
/// pole, across the antimeridian, or wider than half the globe).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bounds {
    pub lat: (f64, f64),
    pub lon: Option<(f64, f64)>,
}

impl NearValue {
    /// The box every position within the distance lies in (a superset: the exact test follows).
    pub fn bounds(&self) -> Bounds {
        let angle = (self.distance_m / EARTH_RADIUS_M).to_degrees();
        // A hair wider than exact, so rounding never drops a point on the edge.
        let pad = angle * 1e-9 + 1e-9;
        let lat = ((self.lat - angle - pad).max(-90.0), (self.lat + angle + pad).min(90.0));
        let widest = self.lat.abs().max(lat.0.abs()).max(lat.1.abs());
        let lon = if widest >= 89.999 || angle >= 90.0 {
            None
        } else {
            let half = angle / widest.to_radians().cos() + pad;
            let (west, east) = (self.lon - half, self.lon + half);
            (west >= -180.0 && east <= 180.0).then_some((west, east))
        };
        Bounds { lat, lon }
    }

    /// The largest squared chord between unit vectors of two points within the distance.
    pub fn chord2(&self) -> f64 {
        let angle = (self.distance_m / EARTH_RADIUS_M).min(std::f64::consts::PI);
        let chord = 2.0 * (angle / 2.0).sin();
        // Relative slack for rounding (a point exactly at the distance is in).
        chord * chord * (1.0 + 1e-12) + 1e-15
    }

    /// The matching rule: the position is within the distance (great circle).
    pub fn matches_position(&self, lat: f64, lon: f64) -> bool {
        let [x, y, z] = unit_vector(lat, lon);
        let [x0, y0, z0] = unit_vector(self.lat, self.lon);
        (x - x0).powi(2) + (y - y0).powi(2) + (z - z0).powi(2) <= self.chord2()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances_match_known_values() {
        // Delhi (Connaught Place) to Mumbai (CST): about 1,166 km as the crow flies.
        let d = distance_m(28.6315, 77.2167, 18.9398, 72.8355) / 1000.0;
        assert!((1160.0..1172.0).contains(&d), "{d}");
        // One degree of latitude is about 111.2 km.
        let d = distance_m(10.0, 20.0, 11.0, 20.0);
        assert!((d - 111_195.0).abs() < 10.0, "{d}");
        assert!(distance_m(1.0, 2.0, 1.0, 2.0).abs() < 1e-6);
    }

    #[test]
    fn the_chord_test_agrees_with_haversine_and_the_box_holds_every_match() {
        let centre = NearValue { lat: 28.6, lon: 77.2, distance_m: 10_000.0 };
        let b = centre.bounds();
        let mut inside = 0;
        for i in -40..=40 {
            for j in -40..=40 {
                let (lat, lon) = (28.6 + f64::from(i) * 0.005, 77.2 + f64::from(j) * 0.005);
                let d = distance_m(28.6, 77.2, lat, lon);
                let m = centre.matches_position(lat, lon);
                if (d - 10_000.0).abs() > 1.0 {
                    assert_eq!(m, d <= 10_000.0, "({lat}, {lon}) at {d} m");
                }
                if m {
                    inside += 1;
                    assert!(lat >= b.lat.0 && lat <= b.lat.1);
                    let (w, e) = b.lon.unwrap();
                    assert!(lon >= w && lon <= e, "({lat}, {lon}) outside {b:?}");
                }
            }
        }
        assert!(inside > 100);
    }

    #[test]
    fn boxes_near_a_pole_or_the_antimeridian_span_every_longitude() {
        assert_eq!(NearValue { lat: 89.99, lon: 0.0, distance_m: 5_000.0 }.bounds().lon, None);
        assert_eq!(NearValue { lat: 0.0, lon: 179.99, distance_m: 5_000.0 }.bounds().lon, None);
        assert!(NearValue { lat: 0.0, lon: 10.0, distance_m: 5_000.0 }.bounds().lon.is_some());
        // Antipodes: everything is within half the circumference.
        let all = NearValue { lat: 0.0, lon: 0.0, distance_m: 20_100_000.0 };
        assert!(all.matches_position(0.0, 180.0));
    }
}
