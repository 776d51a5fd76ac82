import Foundation

/// Just enough of PNG (8-bit greyscale, RGB or RGBA, not interlaced, as Chromium writes its
/// screenshots) and of zlib's inflate (RFC 1950/1951) to count a screenshot's colours in a test.
struct PNGImage {
    struct DecodeError: Error, CustomStringConvertible {
        var description: String
        init(_ d: String) { description = "PNG: " + d }
    }

    var width: Int
    var height: Int
    /// Bytes per pixel (1 grey, 3 RGB, 4 RGBA).
    var channels: Int
    /// Unfiltered rows, `width * channels` bytes each.
    var pixels: [UInt8]

    init(data: Data) throws {
        let bytes = [UInt8](data)
        guard bytes.count > 8, bytes[0..<8] == [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] else {
            throw DecodeError("no PNG signature")
        }
        func be32(_ i: Int) -> Int { Int(bytes[i]) << 24 | Int(bytes[i + 1]) << 16 | Int(bytes[i + 2]) << 8 | Int(bytes[i + 3]) }
        var i = 8, idat: [UInt8] = [], header: ArraySlice<UInt8> = []
        while i + 8 <= bytes.count {
            let length = be32(i), type = String(decoding: bytes[(i + 4)..<(i + 8)], as: UTF8.self)
            guard i + 12 + length <= bytes.count else { throw DecodeError("chunk \(type) runs past the end") }
            let body = bytes[(i + 8)..<(i + 8 + length)]
            if type == "IHDR" { header = body }
            if type == "IDAT" { idat += body }
            if type == "IEND" { break }
            i += 12 + length
        }
        guard header.count == 13 else { throw DecodeError("no IHDR") }
        let h = Array(header)
        width = Int(h[0]) << 24 | Int(h[1]) << 16 | Int(h[2]) << 8 | Int(h[3])
        height = Int(h[4]) << 24 | Int(h[5]) << 16 | Int(h[6]) << 8 | Int(h[7])
        guard h[8] == 8, h[12] == 0 else { throw DecodeError("bit depth \(h[8]), interlace \(h[12]): only 8-bit, non-interlaced") }
        switch h[9] {
        case 0: channels = 1
        case 2: channels = 3
        case 6: channels = 4
        default: throw DecodeError("colour type \(h[9]) not supported")
        }
        guard idat.count > 2 else { throw DecodeError("no image data") }
        let raw = try Inflate.decompress(Array(idat.dropFirst(2)))   // skip the zlib header
        let stride = width * channels
        guard raw.count >= height * (stride + 1) else { throw DecodeError("image data too short: \(raw.count) bytes") }
        var out = [UInt8](repeating: 0, count: height * stride)
        for y in 0..<height {
            let filter = raw[y * (stride + 1)], src = y * (stride + 1) + 1, dst = y * stride
            for x in 0..<stride {
                let a = x >= channels ? Int(out[dst + x - channels]) : 0
                let b = y > 0 ? Int(out[dst - stride + x]) : 0
                let c = (x >= channels && y > 0) ? Int(out[dst - stride + x - channels]) : 0
                let v = Int(raw[src + x])
                let predicted: Int
                switch filter {
                case 0: predicted = 0
                case 1: predicted = a
                case 2: predicted = b
                case 3: predicted = (a + b) / 2
                case 4:
                    let p = a + b - c, pa = abs(p - a), pb = abs(p - b), pc = abs(p - c)
                    predicted = (pa <= pb && pa <= pc) ? a : (pb <= pc ? b : c)
                default: throw DecodeError("filter type \(filter) in row \(y)")
                }
                out[dst + x] = UInt8((v + predicted) & 0xFF)
            }
        }
        pixels = out
    }

    /// The number of distinct pixel values.
    var distinctColours: Int {
        var seen = Set<UInt32>()
        var i = 0
        while i < pixels.count {
            var v: UInt32 = 0
            for c in 0..<min(channels, 4) { v = v << 8 | UInt32(pixels[i + c]) }
            seen.insert(v)
            i += channels
        }
        return seen.count
    }

    /// The share of pixels (0…1) that differ from the top-left one.
    var nonBackgroundShare: Double {
        let bg = Array(pixels.prefix(channels))
        var differ = 0
        var i = 0
        while i < pixels.count {
            if pixels[i..<(i + channels)].elementsEqual(bg) == false { differ += 1 }
            i += channels
        }
        return Double(differ) / Double(max(1, width * height))
    }
}

/// DEFLATE decompression (stored, fixed and dynamic Huffman blocks).
enum Inflate {
    struct Bits {
        let data: [UInt8]
        var pos = 0, bit = 0
        mutating func read(_ n: Int) throws -> Int {
            var v = 0
            for k in 0..<n {
                guard pos < data.count else { throw PNGImage.DecodeError("deflate stream ends early") }
                v |= Int((data[pos] >> UInt8(bit)) & 1) << k
                bit += 1
                if bit == 8 { bit = 0; pos += 1 }
            }
            return v
        }
        mutating func alignToByte() { if bit != 0 { bit = 0; pos += 1 } }
    }

    /// Canonical Huffman code: counts per length and symbols in code order.
    struct Huffman {
        var counts = [Int](repeating: 0, count: 16)
        var symbols: [Int] = []
        init(lengths: [Int]) {
            for l in lengths { counts[l] += 1 }
            counts[0] = 0
            var offsets = [Int](repeating: 0, count: 16)
            for l in 1..<16 { offsets[l] = offsets[l - 1] + counts[l - 1] }
            symbols = [Int](repeating: 0, count: lengths.count)
            for (s, l) in lengths.enumerated() where l != 0 { symbols[offsets[l]] = s; offsets[l] += 1 }
        }
        func decode(_ bits: inout Bits) throws -> Int {
            var code = 0, first = 0, index = 0
            for len in 1..<16 {
                code |= try bits.read(1)
                let count = counts[len]
                if code - count < first { return symbols[index + (code - first)] }
                index += count
                first = (first + count) << 1
                code <<= 1
            }
            throw PNGImage.DecodeError("bad Huffman code")
        }
    }

    static let lengthBase = [3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258]
    static let lengthExtra = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0]
    static let distBase = [1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073,
                           4097, 6145, 8193, 12289, 16385, 24577]
    static let distExtra = [0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13]

    static func decompress(_ input: [UInt8]) throws -> [UInt8] {
        var bits = Bits(data: input)
        var out: [UInt8] = []
        var last = 0
        repeat {
            last = try bits.read(1)
            switch try bits.read(2) {
            case 0:
                bits.alignToByte()
                guard bits.pos + 4 <= input.count else { throw PNGImage.DecodeError("stored block header cut off") }
                let len = Int(input[bits.pos]) | Int(input[bits.pos + 1]) << 8
                bits.pos += 4
                guard bits.pos + len <= input.count else { throw PNGImage.DecodeError("stored block cut off") }
                out += input[bits.pos..<(bits.pos + len)]
                bits.pos += len
            case 1:
                let lit = Huffman(lengths: (0..<288).map { $0 < 144 ? 8 : $0 < 256 ? 9 : $0 < 280 ? 7 : 8 })
                try codes(&bits, &out, lit, Huffman(lengths: [Int](repeating: 5, count: 30)))
            case 2:
                let (lit, dist) = try dynamicTables(&bits)
                try codes(&bits, &out, lit, dist)
            default:
                throw PNGImage.DecodeError("reserved deflate block type")
            }
        } while last == 0
        return out
    }

    static func dynamicTables(_ bits: inout Bits) throws -> (Huffman, Huffman) {
        let hlit = try bits.read(5) + 257, hdist = try bits.read(5) + 1, hclen = try bits.read(4) + 4
        let order = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15]
        var clen = [Int](repeating: 0, count: 19)
        for k in 0..<hclen { clen[order[k]] = try bits.read(3) }
        let codeLengths = Huffman(lengths: clen)
        var lengths: [Int] = []
        while lengths.count < hlit + hdist {
            let sym = try codeLengths.decode(&bits)
            switch sym {
            case 0..<16: lengths.append(sym)
            case 16:
                guard let prev = lengths.last else { throw PNGImage.DecodeError("repeat with no previous length") }
                lengths += [Int](repeating: prev, count: 3 + (try bits.read(2)))
            case 17: lengths += [Int](repeating: 0, count: 3 + (try bits.read(3)))
            default: lengths += [Int](repeating: 0, count: 11 + (try bits.read(7)))
            }
        }
        return (Huffman(lengths: Array(lengths[0..<hlit])), Huffman(lengths: Array(lengths[hlit..<(hlit + hdist)])))
    }

    static func codes(_ bits: inout Bits, _ out: inout [UInt8], _ lit: Huffman, _ dist: Huffman) throws {
        while true {
            let sym = try lit.decode(&bits)
            if sym < 256 { out.append(UInt8(sym)); continue }
            if sym == 256 { return }
            let li = sym - 257
            guard li < lengthBase.count else { throw PNGImage.DecodeError("bad length symbol \(sym)") }
            let length = lengthBase[li] + (try bits.read(lengthExtra[li]))
            let di = try dist.decode(&bits)
            guard di < distBase.count else { throw PNGImage.DecodeError("bad distance symbol \(di)") }
            let distance = distBase[di] + (try bits.read(distExtra[di]))
            guard distance <= out.count else { throw PNGImage.DecodeError("distance \(distance) before the start") }
            let start = out.count - distance
            for k in 0..<length { out.append(out[start + k]) }
        }
    }
}
