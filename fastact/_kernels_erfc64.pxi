# erfc(a) for a >= 0 in float64: see erfcp_f32 in _kernels_body.pxi.
# P(u) is of degree 22 (fitted relative error 6.9e-18 on a in [0, 27.5],
# K = 3), evaluated by Estrin's scheme in u, u^2, u^4, u^8, u^16.

cdef inline double erfcp_f64(double a) noexcept nogil:
    cdef double amax = 27.5, K = 3.0, twoK = 6.0, one = 1.0
    cdef double p0 = 0.17900115118138996
    cdef double p1 = -0.14723240886164726
    cdef double p2 = 0.09837139285068323
    cdef double p3 = -0.05174454365009564
    cdef double p4 = 0.019921293547905883
    cdef double p5 = -0.004471205770718678
    cdef double p6 = -0.00020206943843327428
    cdef double p7 = 0.0005056769998482355
    cdef double p8 = -9.138494191759575e-05
    cdef double p9 = -4.6129638294564086e-05
    cdef double p10 = 1.7926868500275814e-05
    cdef double p11 = 5.066344963499362e-06
    cdef double p12 = -2.9115672959961805e-06
    cdef double p13 = -7.914719040301724e-07
    cdef double p14 = 4.6038076464615793e-07
    cdef double p15 = 1.662841215173873e-07
    cdef double p16 = -6.712013035208657e-08
    cdef double p17 = -3.851531876372635e-08
    cdef double p18 = 6.784061927459266e-09
    cdef double p19 = 7.90597918140317e-09
    cdef double p20 = 3.1643593300291363e-10
    cdef double p21 = -9.990187272688197e-10
    cdef double p22 = -2.3404986481405776e-10
    cdef double q, u, v, P, z, zl, u2, u4, u8, u16
    cdef double e0, e1, e2, e3, e4, e5, e6, e7, e8, e9, e10, e11
    a = amax if a > amax else a
    q = one / (a + K)
    u = (a - K) * q
    v = twoK * q
    u2 = u * u
    u4 = u2 * u2
    u8 = u4 * u4
    u16 = u8 * u8
    e0 = p0 + u * p1
    e1 = p2 + u * p3
    e2 = p4 + u * p5
    e3 = p6 + u * p7
    e4 = p8 + u * p9
    e5 = p10 + u * p11
    e6 = p12 + u * p13
    e7 = p14 + u * p15
    e8 = p16 + u * p17
    e9 = p18 + u * p19
    e10 = p20 + u * p21
    e11 = p22
    e0 = e0 + u2 * e1
    e2 = e2 + u2 * e3
    e4 = e4 + u2 * e5
    e6 = e6 + u2 * e7
    e8 = e8 + u2 * e9
    e10 = e10 + u2 * e11
    e0 = e0 + u4 * e2
    e4 = e4 + u4 * e6
    e8 = e8 + u4 * e10
    e0 = e0 + u8 * e4
    P = e0 + u16 * e8
    z = a * a
    zl = fa_two_prod_lo_f64(a, a, z)
    return one if a == 0 else expn_f64(-z) * ((one - zl) * (v * P))
