-- The DESI main-survey LRG target selection, after desitarget (github.com/desihub/desitarget,
-- py/desitarget/cuts.py: notinLRG_mask and isLRG_colors; Zhou et al. 2023, AJ 165, 58).
-- South (DECaLS) and north (BASS/MzLS) share this text and differ only in the bound numbers
-- (spec DesiLrg; defaults per variant in darkhalo.spec.DESI_LRG_DEFAULTS).
-- Magnitudes are extinction-corrected (flux / MW_TRANSMISSION) and, as in desitarget, computed
-- from fluxes clipped at 1e-7 nanomaggies (so a g-band non-detection counts as very red).
-- Reads the temporary view `catalog` (sweep columns).
WITH mags AS (
    SELECT
        *,
        22.5 - 2.5 * LOG10(GREATEST(FLUX_G / MW_TRANSMISSION_G, 1e-7D)) AS _g,
        22.5 - 2.5 * LOG10(GREATEST(FLUX_R / MW_TRANSMISSION_R, 1e-7D)) AS _r,
        22.5 - 2.5 * LOG10(GREATEST(FLUX_Z / MW_TRANSMISSION_Z, 1e-7D)) AS _z,
        22.5 - 2.5 * LOG10(GREATEST(FLUX_W1 / MW_TRANSMISSION_W1, 1e-7D)) AS _w1,
        22.5 - 2.5 * LOG10(GREATEST(FIBERFLUX_Z / MW_TRANSMISSION_Z, 1e-7D)) AS _zfiber,
        22.5 - 2.5 * LOG10(GREATEST(FIBERTOTFLUX_Z / MW_TRANSMISSION_Z, 1e-7D)) AS _zfibertot
    FROM catalog
    -- quality (notinLRG_mask): positive flux and S/N, observed in g, r and z, outside bright-star,
    -- large-galaxy and globular-cluster masks. The default W1 S/N > 4 is the SV-era cut; the main
    -- survey asks only W1 ivar > 0 (w1_snr_min: 0).
    WHERE FLUX_R > 0 AND FLUX_Z > 0 AND FLUX_W1 > 0 AND FIBERFLUX_Z > 0
      AND FLUX_R * SQRT(FLUX_IVAR_R) > :r_snr_min
      AND FLUX_Z * SQRT(FLUX_IVAR_Z) > :z_snr_min
      AND FLUX_W1 * SQRT(FLUX_IVAR_W1) > :w1_snr_min
      AND NOBS_G > 0 AND NOBS_R > 0 AND NOBS_Z > 0
      AND (MASKBITS & :maskbits_veto) = 0
      AND (GAIA_PHOT_G_MEAN_MAG = 0 OR GAIA_PHOT_G_MEAN_MAG > :gaia_g_min)
)
SELECT *
FROM mags
WHERE _zfibertot > :zfibertot_mag_min
  -- non-stellar cut
  AND _z - _w1 > :nonstellar_slope * (_r - _z) + :nonstellar_offset
  -- faint limit
  AND _zfiber < :zfiber_mag_max
  -- low-z cuts
  AND (_g - _w1 > :g_minus_w1_min OR _r - _w1 > :r_minus_w1_lowz)
  -- double sliding cuts and high-z extension
  AND (
      (_r - _w1 > (_w1 - :sliding_w1_pivot) * :sliding_slope AND _r - _w1 > (_w1 - :lowz_w1_pivot) * :lowz_slope)
      OR _r - _w1 > :r_minus_w1_highz
  )
