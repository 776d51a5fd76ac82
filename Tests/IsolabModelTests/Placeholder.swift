import XCTest

final class IsolabModelTestsPlaceholder: XCTestCase {
    func testPlaceholder() {}
}
