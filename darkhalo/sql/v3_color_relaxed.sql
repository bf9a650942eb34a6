-- Gen 1's parent sample ("v3_color_relaxed"): resolved galaxies, bright in z, red in r - z and z - W1.
-- AB magnitudes from nanomaggies, m = 22.5 - 2.5 log10(flux); with :extinction_corrected each flux
-- is divided by its MW_TRANSMISSION first (Gen 1 cut on raw magnitudes). Every threshold is a bound
-- parameter from the spec, never text. Reads the temporary view `catalog` (sweep columns).
WITH mags AS (
    SELECT
        *,
        22.5 - 2.5 * LOG10(FLUX_R / IF(:extinction_corrected, MW_TRANSMISSION_R, 1.0D)) AS _r,
        22.5 - 2.5 * LOG10(FLUX_Z / IF(:extinction_corrected, MW_TRANSMISSION_Z, 1.0D)) AS _z,
        22.5 - 2.5 * LOG10(FLUX_W1 / IF(:extinction_corrected, MW_TRANSMISSION_W1, 1.0D)) AS _w1
    FROM catalog
    WHERE TYPE <> 'PSF' AND FLUX_R > 0 AND FLUX_Z > 0 AND FLUX_W1 > 0
)
SELECT *
FROM mags
WHERE _z < :z_mag_max
  AND _r - _z > :r_minus_z_min
  AND _z - _w1 > :z_minus_w1_min
