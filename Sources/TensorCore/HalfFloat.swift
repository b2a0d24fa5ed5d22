// IEEE 754 binary16 (F16) and bfloat16 (BF16) to and from float32, in integer bit arithmetic.
//
// Follows IEEE 754-2008 binary16 (1 sign, 5 exponent, 10 fraction bits, bias 15) and Google's
// bfloat16 (the top 16 bits of a binary32). Conversions to the narrow types round to nearest,
// ties to even, as PyTorch's `.half()` / `.bfloat16()` do; subnormals, ±0, ±inf and NaN are kept
// (NaN payload bits that fit are kept and the result is always a quiet NaN). No `Float16`
// type is needed, so this works on every platform Swift runs on.

public enum HalfFloat {
    /// The float32 value of the binary16 bit pattern `bits` (exact: every F16 is a F32).
    @inline(__always)
    public static func float(fromF16 bits: UInt16) -> Float {
        let sign = UInt32(bits & 0x8000) << 16
        let exponent = UInt32(bits >> 10) & 0x1F
        var mantissa = UInt32(bits & 0x03FF)
        if exponent == 0x1F {
            // inf (mantissa 0) or NaN: widen the payload; the quiet bit stays the top fraction bit.
            return Float(bitPattern: sign | 0x7F80_0000 | (mantissa << 13))
        }
        if exponent == 0 {
            if mantissa == 0 { return Float(bitPattern: sign) }  // ±0
            // Subnormal m·2^-24: shift the leading 1 up to the implicit-bit position.
            var e: UInt32 = 127 - 14
            while mantissa & 0x0400 == 0 { mantissa <<= 1; e -= 1 }
            return Float(bitPattern: sign | (e << 23) | ((mantissa & 0x03FF) << 13))
        }
        return Float(bitPattern: sign | ((exponent + 127 - 15) << 23) | (mantissa << 13))
    }

    /// The binary16 bit pattern nearest to `value` (ties to even; overflow gives ±inf).
    @inline(__always)
    public static func f16Bits(from value: Float) -> UInt16 {
        let x = value.bitPattern
        let sign = UInt16((x >> 16) & 0x8000)
        let exponent = Int((x >> 23) & 0xFF)
        let mantissa = x & 0x007F_FFFF
        if exponent == 0xFF {
            if mantissa == 0 { return sign | 0x7C00 }
            return sign | 0x7C00 | 0x0200 | UInt16(truncatingIfNeeded: mantissa >> 13)
        }
        let e = exponent - 127 + 15
        if e >= 0x1F { return sign | 0x7C00 }
        if e <= 0 {
            // Subnormal result m16·2^-24 with m16 = m24·2^(e-14), m24 the 24-bit significand.
            if e < -10 { return sign }  // below half the smallest subnormal: rounds to ±0
            let m = mantissa | 0x0080_0000
            let shift = UInt32(14 - e)  // 14...24
            let half = UInt32(1) << (shift - 1)
            let rest = m & ((UInt32(1) << shift) - 1)
            var r = m >> shift
            if rest > half || (rest == half && r & 1 == 1) { r += 1 }  // may carry into the smallest normal
            return sign | UInt16(truncatingIfNeeded: r)
        }
        var r = (UInt32(e) << 10) | (mantissa >> 13)
        let rest = mantissa & 0x1FFF
        if rest > 0x1000 || (rest == 0x1000 && r & 1 == 1) { r += 1 }  // a carry may reach inf: correct
        return sign | UInt16(truncatingIfNeeded: r)
    }

    /// The float32 value of the bfloat16 bit pattern `bits` (exact).
    @inline(__always)
    public static func float(fromBF16 bits: UInt16) -> Float {
        Float(bitPattern: UInt32(bits) << 16)
    }

    /// The bfloat16 bit pattern nearest to `value` (ties to even; NaN stays a quiet NaN).
    @inline(__always)
    public static func bf16Bits(from value: Float) -> UInt16 {
        let x = value.bitPattern
        if x & 0x7FFF_FFFF > 0x7F80_0000 { return UInt16(truncatingIfNeeded: x >> 16) | 0x0040 }
        let lsb = (x >> 16) & 1
        return UInt16(truncatingIfNeeded: (x &+ 0x7FFF &+ lsb) >> 16)
    }
}
