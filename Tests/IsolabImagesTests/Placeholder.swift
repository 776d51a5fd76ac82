import XCTest

final class IsolabImagesTestsPlaceholder: XCTestCase {
    func testPlaceholder() {}
}
