// Tests Random.swift: determinism, and the first values of seed 42 pinned, so a change of
// algorithm or platform shows. The pinned numbers come from an independent implementation of
// SplitMix64 + xoshiro256** (Blackman & Vigna's reference algorithms), not from this code.

import Foundation
import TensorCore
import TestSupport
import XCTest

final class RandomTests: XCTestCase {
    func testSeed42FirstValuesArePinned() {
        var g = SeededGenerator(seed: 42)
        XCTAssertEqual((0..<4).map { _ in g.next() },
                       [0x1578_0B2E_0C2E_C716, 0x6104_D986_6D11_3A7E, 0xAE17_5332_39E4_99A1, 0xECB8_AD47_03B3_60A1])
        var u = SeededGenerator(seed: 42)
        let expected = [0.08386297105988216, 0.3789802506626686, 0.6800434110281394, 0.9246929453253876]
        for e in expected { XCTAssertEqual(u.nextUniform(), e, accuracy: 1e-16) }
    }

    func testSameSeedSameNumbersDifferentSeedDifferent() {
        var a = SeededGenerator(seed: 7), b = SeededGenerator(seed: 7), c = SeededGenerator(seed: 8)
        let ta = Tensor.randomNormal([100], generator: &a), tb = Tensor.randomNormal([100], generator: &b)
        XCTAssertEqual(ta.scalars, tb.scalars)
        XCTAssertNotEqual(ta.scalars, Tensor.randomNormal([100], generator: &c).scalars)
        XCTAssertEqual(randomTensor([3, 4], seed: 5).scalars, randomTensor([3, 4], seed: 5).scalars)
    }

    func testDistributionsHaveTheirMoments() {
        var g = SeededGenerator(seed: 1)
        let n = Tensor.randomNormal([20_000], mean: 2, std: 3, generator: &g)
        XCTAssertEqual(n.mean().item(), 2, accuracy: 0.1)
        XCTAssertEqual(n.variance().item().squareRoot(), 3, accuracy: 0.1)
        let u = Tensor.randomUniform([20_000], low: -1, high: 3, generator: &g)
        XCTAssertGreaterThanOrEqual(u.amin().item(), -1)
        XCTAssertLessThan(u.amax().item(), 3)
        XCTAssertEqual(u.mean().item(), 1, accuracy: 0.05)
        for _ in 0..<1000 { let k = g.nextInt(below: 7); XCTAssertTrue((0..<7).contains(k)) }
    }
}
