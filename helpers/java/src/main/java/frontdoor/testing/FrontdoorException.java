package frontdoor.testing;

/** frontdoor could not be found, did not start, refused a change, or a command failed; the
 *  message carries frontdoor's own words (and its log's end when it did not start). */
public class FrontdoorException extends RuntimeException {
    public FrontdoorException(String message) {
        super(message);
    }

    public FrontdoorException(String message, Throwable cause) {
        super(message, cause);
    }
}
