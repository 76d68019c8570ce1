<?php
// The runtime's vendor/autoload.php, for actions without a vendor/ of their own: the Composer packages that
// OpenWhisk's PHP runtime ships (guzzlehttp/guzzle, ramsey/uuid), from Debian's packages and their autoloaders.
require_once '/usr/share/php/GuzzleHttp/autoload.php';
require_once '/usr/share/php/Ramsey/Uuid/autoload.php';
