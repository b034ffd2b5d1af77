package frontdoor.testing;

import org.junit.jupiter.api.extension.AfterAllCallback;
import org.junit.jupiter.api.extension.AfterEachCallback;
import org.junit.jupiter.api.extension.BeforeAllCallback;
import org.junit.jupiter.api.extension.BeforeEachCallback;
import org.junit.jupiter.api.extension.ExtensionContext;

/**
 * A frontdoor for JUnit 5 tests, registered with {@code @RegisterExtension}: on an instance
 * field, a frontdoor of its own for each test; on a static field, one for the whole class.
 * It stops after the test (or the class), passed or failed.
 *
 * <pre>
 * {@literal @}RegisterExtension
 * final FrontdoorExtension frontdoor = FrontdoorExtension.withConfig(CONFIG);
 * </pre>
 */
public final class FrontdoorExtension
    implements BeforeAllCallback, AfterAllCallback, BeforeEachCallback, AfterEachCallback {
    private final String config;
    private Frontdoor running;
    private boolean perClass;

    private FrontdoorExtension(String config) {
        this.config = config;
    }

    /** The configuration, YAML text (anything with a line break) or a services.yaml path. */
    public static FrontdoorExtension withConfig(String config) {
        return new FrontdoorExtension(config);
    }

    /** The frontdoor running for the current test. */
    public Frontdoor frontdoor() {
        if (running == null) {
            throw new FrontdoorException("frontdoor is not running: register the extension with @RegisterExtension");
        }
        return running;
    }

    // JUnit calls the class callbacks only for an extension in a static field.
    @Override
    public void beforeAll(ExtensionContext context) {
        perClass = true;
        running = Frontdoor.start(config);
    }

    @Override
    public void afterAll(ExtensionContext context) {
        stop();
    }

    @Override
    public void beforeEach(ExtensionContext context) {
        if (!perClass) {
            running = Frontdoor.start(config);
        }
    }

    @Override
    public void afterEach(ExtensionContext context) {
        if (!perClass) {
            stop();
        }
    }

    private void stop() {
        if (running != null) {
            running.close();
            running = null;
        }
    }
}
